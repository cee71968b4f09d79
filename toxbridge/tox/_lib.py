"""Loading libtoxcore through cffi (ABI mode), and turning its error enums into exceptions.

This package is the only place in toxbridge that touches cffi.
"""

from __future__ import annotations

import ctypes.util
import os
from functools import cache

import cffi

from ._cdefs import CDEF
from .errors import ToxError, ToxLibraryError

__all__ = ["ffi", "load", "ensure"]

ffi = cffi.FFI()
ffi.cdef(CDEF)

# The sizes the declarations above assume; a library that disagrees is refused.
PUBLIC_KEY_SIZE = 32
ADDRESS_SIZE = 38
MAX_MESSAGE_LENGTH = 1372
MAX_CUSTOM_PACKET_SIZE = 1373
MAX_FRIEND_REQUEST_LENGTH = 1016
PASS_ENCRYPTION_EXTRA_LENGTH = 80


def _candidates() -> list[str]:
    explicit = os.environ.get("TOXBRIDGE_LIBTOXCORE")
    if explicit:
        return [explicit]
    found = ctypes.util.find_library("toxcore")
    names = ["libtoxcore.so.2", "libtoxcore.so", "libtoxcore.dylib"]
    return ([found] if found else []) + names


@cache
def load():
    """Return the loaded libtoxcore (once per process).

    Raises ToxLibraryError when no compatible library can be loaded.
    """
    tried = []
    for name in _candidates():
        try:
            lib = ffi.dlopen(name)
        except OSError as exc:
            tried.append(f"{name}: {exc}")
            continue
        _check_compatible(lib, name)
        return lib
    raise ToxLibraryError(
        "libtoxcore not found (run native/toxcore-build.sh, or set TOXBRIDGE_LIBTOXCORE): "
        + "; ".join(tried)
    )


def _check_compatible(lib, name: str) -> None:
    version = (lib.tox_version_major(), lib.tox_version_minor(), lib.tox_version_patch())
    sizes = (
        lib.tox_public_key_size(),
        lib.tox_address_size(),
        lib.tox_max_message_length(),
        lib.tox_max_custom_packet_size(),
        lib.tox_max_friend_request_length(),
        lib.tox_pass_encryption_extra_length(),
    )
    expected = (
        PUBLIC_KEY_SIZE,
        ADDRESS_SIZE,
        MAX_MESSAGE_LENGTH,
        MAX_CUSTOM_PACKET_SIZE,
        MAX_FRIEND_REQUEST_LENGTH,
        PASS_ENCRYPTION_EXTRA_LENGTH,
    )
    if version[0] != 0 or version[1] != 2 or sizes != expected:
        raise ToxLibraryError(
            f"{name} is toxcore {'.'.join(map(str, version))} with sizes {sizes}; "
            f"toxbridge needs toxcore 0.2.x with sizes {expected}"
        )


@cache
def _enum_names(ctype) -> dict[int, str]:
    # "TOX_ERR_FRIEND_ADD_ALREADY_SENT" -> "FRIEND_ADD_ALREADY_SENT"
    return {value: name.removeprefix("TOX_ERR_") for value, name in ctype.elements.items()}


def ensure(err, exc_type: type[ToxError], function: str) -> None:
    """Raise ``exc_type`` naming toxcore's error if the error out-parameter is not OK.

    ``err`` is the ``Tox_Err_*[1]`` cdata the C function filled in; its enum type is
    read from the cdata itself, so one helper serves every function.
    """
    code = int(err[0])
    if code == 0:
        return
    names = _enum_names(ffi.typeof(err).item)
    raise exc_type(function, names.get(code, f"UNKNOWN_{code}"), code)
