#!/usr/bin/env bash
# Make libtoxcore (the shared library and headers) and tox-bootstrapd available, and
# the network tools the NAT and WAN tests use (ip, iptables, libnetfilter-queue-dev) where apt exists.
#
#   Debian/Ubuntu:  installs libtoxcore-dev and toxcore-utils with apt when missing
#                   (apt-get update only when a package cannot be found). Quiet and
#                   idempotent when all is there. Also installs iproute2 and iptables
#                   when missing (tests/test_nat.py builds NAT routers in network
#                   namespaces); if that is impossible (no root or sudo) it only warns:
#                   those tests then skip.
#                   Likewise libnetfilter-queue-dev and a C compiler, which the
#                   `netfilterqueue` package (the WAN emulator, toxbridge/testing/wan.py)
#                   builds against: without them the WAN tests and `bench wan` skip.
#   Elsewhere:      TOXCORE_SRC=/path/to/c-toxcore native/toxcore-build.sh
#                   builds it with cmake into native/prefix; then point the binding at it:
#                   export TOXBRIDGE_LIBTOXCORE=native/prefix/lib/libtoxcore.so
#                   export PATH=native/prefix/bin:$PATH   (tox-bootstrapd)
#
# Exit status is non-zero, with one line on stderr, when neither way is possible.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
prefix="$here/prefix"

have_system_toxcore() {
    command -v tox-bootstrapd >/dev/null 2>&1 || return 1
    [ -n "$(ldconfig -p 2>/dev/null | grep -F 'libtoxcore.so.2')" ] || return 1
}

have_cmd() {
    command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]
}

# The NAT and WAN tests' tools: best effort (a warning, never a failure).
have_pkg() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

install_net_tools() {
    local want=""
    have_cmd ip || want="$want iproute2"
    have_cmd iptables || want="$want iptables"
    if command -v dpkg-query >/dev/null 2>&1; then
        have_pkg libnetfilter-queue-dev || want="$want libnetfilter-queue-dev"
        have_cmd cc || want="$want gcc libc6-dev"
    fi
    [ -n "$want" ] || return 0
    command -v apt-get >/dev/null 2>&1 || { echo "toxcore-build: no apt-get; install$want yourself for the NAT and WAN tests" >&2; return 0; }
    local sudo=""
    if [ "$(id -u)" != 0 ]; then
        command -v sudo >/dev/null 2>&1 || { echo "toxcore-build: need root (or sudo) to install$want; the NAT and WAN tests will skip" >&2; return 0; }
        sudo="sudo"
    fi
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-cache show $want >/dev/null 2>&1; then
        $sudo apt-get update -qq >/dev/null || true
    fi
    echo "toxcore-build: apt-get install$want" >&2
    $sudo apt-get install -y -qq --no-install-recommends $want >/dev/null \
        || echo "toxcore-build: apt-get install$want failed; the NAT and WAN tests will skip" >&2
}
install_net_tools

if [ -z "${TOXCORE_SRC:-}" ] && have_system_toxcore; then
    exit 0
fi

if [ -z "${TOXCORE_SRC:-}" ] && command -v apt-get >/dev/null 2>&1; then
    sudo=""
    if [ "$(id -u)" != 0 ]; then
        command -v sudo >/dev/null 2>&1 || { echo "toxcore-build: need root (or sudo) to apt-get install libtoxcore-dev toxcore-utils" >&2; exit 1; }
        sudo="sudo"
    fi
    pkgs="libtoxcore-dev toxcore-utils"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-cache show $pkgs >/dev/null 2>&1; then
        echo "toxcore-build: apt-get update" >&2
        $sudo apt-get update -qq >/dev/null
    fi
    echo "toxcore-build: apt-get install $pkgs" >&2
    if ! $sudo apt-get install -y -qq --no-install-recommends $pkgs >/dev/null; then
        echo "toxcore-build: apt-get install $pkgs failed" >&2
        exit 1
    fi
    have_system_toxcore || { echo "toxcore-build: installed $pkgs but libtoxcore.so.2 / tox-bootstrapd are still missing" >&2; exit 1; }
    exit 0
fi

if [ -n "${TOXCORE_SRC:-}" ]; then
    [ -f "$TOXCORE_SRC/CMakeLists.txt" ] || { echo "toxcore-build: TOXCORE_SRC=$TOXCORE_SRC is not a c-toxcore source tree (no CMakeLists.txt)" >&2; exit 1; }
    command -v cmake >/dev/null 2>&1 || { echo "toxcore-build: cmake is needed to build TOXCORE_SRC" >&2; exit 1; }
    if [ -f "$prefix/lib/libtoxcore.so" ] && [ -x "$prefix/bin/tox-bootstrapd" ]; then
        exit 0
    fi
    build="$here/build"
    cmake -S "$TOXCORE_SRC" -B "$build" -DCMAKE_INSTALL_PREFIX="$prefix" -DCMAKE_INSTALL_LIBDIR=lib \
        -DCMAKE_BUILD_TYPE=Release -DBOOTSTRAP_DAEMON=ON -DBUILD_TOXAV=OFF -DAUTOTEST=OFF -DUNITTEST=OFF >/dev/null
    cmake --build "$build" -j"$(nproc 2>/dev/null || echo 2)" >/dev/null
    cmake --install "$build" >/dev/null
    echo "toxcore-build: installed into $prefix" >&2
    echo "  export TOXBRIDGE_LIBTOXCORE=$prefix/lib/libtoxcore.so"
    echo "  export PATH=$prefix/bin:\$PATH"
    exit 0
fi

echo "toxcore-build: no apt-get here; set TOXCORE_SRC to a c-toxcore source tree to build it with cmake" >&2
exit 1
