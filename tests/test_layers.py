"""The tree's imports, read with ``ast``: no cycle anywhere, and nothing below imports from above.

The layers, bottom up: the binding (``toxbridge.tox``), the sans-IO channel pieces (link,
framing, fragments, the crawl and stall watches, node options), the config, the tox thread, the daemon,
and the node and CLI on top; bridge_local sits on the channel (it may use its errors, frames
and fragments, never the daemon); ``toxbridge.testing`` may use everything and nothing in
the product uses it, but for the CLI's ``demo`` subcommand, which runs the testing tools'
demo. Inside bridge_local the modules are ranked the same way (protocol at the bottom, the
chat client on top).

Every import counts, also one inside a function or under ``TYPE_CHECKING``: a lazy import
is still a dependency. A new module must be given a layer here: that is the point.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("toxbridge", "bridge_local")

# The coarse layers: what each may import (besides itself).
ALLOWED: dict[str, set[str]] = {
    "root": set(),  # the two top-level packages' __init__: docstrings, run by every import
    "errors": set(),
    "tox": {"errors"},
    "channel": {"errors", "tox"},
    "access": {"errors"},  # who may use the local ports: peer uids, /proc/net/tcp, app tokens
    "config": {"errors", "tox", "channel"},
    "toxthread": {"errors", "tox", "channel", "config"},
    "daemon": {"errors", "tox", "channel", "access", "config", "toxthread"},
    "bridge_local": {"errors", "channel", "access"},
    "node": {"errors", "tox", "channel", "access", "config", "toxthread", "daemon", "bridge_local"},
    "testing": {"errors", "tox", "channel", "access", "config", "toxthread", "daemon", "bridge_local",
                "node"},
}
LAYER_OF = {  # longest prefix wins; the two root packages are "root", bridge_local.* "bridge_local"
    "toxbridge.__main__": "node",
    "toxbridge.cli": "node",
    "toxbridge.node": "node",
    "toxbridge.errors": "errors",
    "toxbridge.usage": "errors",  # one-line usage errors, for every command line
    "toxbridge.cli.configfile": "config",  # TOML -> option values (pure)
    "toxbridge.bootstrap": "channel",  # nodes handed to toxcore one by one; the retry schedule
    "toxbridge.tox": "tox",
    "toxbridge.link": "channel",
    "toxbridge.streams": "channel",  # many streams over one Link (pure; errors and stdlib only)
    "toxbridge.transport": "channel",  # our transport over lossy packets (sans-IO)
    "toxbridge.framing": "channel",
    "toxbridge.chanstream": "channel",  # the v1 channel's frames inside a mux stream (pure)
    "toxbridge.fragment": "channel",
    "toxbridge.crawl": "channel",
    "toxbridge.stall": "channel",
    "toxbridge.network": "channel",
    "toxbridge.forward": "channel",  # port forwarding's specs, rules, header and answer (pure)
    "toxbridge.control": "channel",  # the package's __init__: a docstring
    "toxbridge.control.protocol": "channel",  # the control protocol's codec (pure)
    "toxbridge.control.snapshot": "channel",  # the status snapshot and its meters (pure)
    "toxbridge.access": "access",
    "toxbridge.config": "config",
    "toxbridge.toxloop": "toxthread",
    "toxbridge.wakeup": "toxthread",
    "toxbridge.cadence": "toxthread",  # how long the tox thread waits, and on what (pure)
    "toxbridge.peerio": "toxthread",  # one peer's mux between its Link and the app queues
    "toxbridge.peerslot": "toxthread",  # one peer of the tox thread: friend, Link, path, mux, meters
    "toxbridge.peertables": "toxthread",  # each peer's local streams, by key, name or "peer"
    "toxbridge.localstreams": "toxthread",  # streams.sock's streams: shared state, tox side
    "toxbridge.localsock": "daemon",  # streams.sock: its trio shell
    "toxbridge.localpipe": "daemon",  # a local connection to and from its stream (trio), for both shells
    "toxbridge.linkpath": "toxthread",  # the Link over lossless packets or our transport
    "toxbridge.pathtrace": "toxthread",  # --trace-path: the transport's state as JSON lines
    "toxbridge.daemon": "daemon",
    "toxbridge.forwarding": "daemon",  # -L / -W / --expose: trio shells over local streams
    "toxbridge.control.server": "daemon",  # the control socket's trio shell
    "toxbridge.testing": "testing",
    "toxbridge.testing.servers": "testing",  # small TCP servers behind a forward (bench, demo)
    "toxbridge.testing.demo_forward": "testing",  # the demo's -L / -W part
}
# Inside bridge_local: a module may import only modules of a lower or equal rank.
BRIDGE_LOCAL_RANK = {
    "bridge_local.protocol": 0,
    "bridge_local.transfer": 1,
    "bridge_local.filestore": 2,
    "bridge_local.wire": 3,
    "bridge_local.store": 3,
    "bridge_local.filenotices": 3,
    "bridge_local.client": 3,
    "bridge_local.apptoken": 3,
    "bridge_local.fileservice": 4,
    "bridge_local.peerout": 4,
    "bridge_local.sessions": 4,
    "bridge_local.routing": 4,  # who reaches whom: routes and announcements (functions)
    "bridge_local.peering": 5,  # the core's part: the session protocol with the peer bridges
    "bridge_local.lanes": 5,  # the core's part: the daemon's channel, the streams per peer
    "bridge_local.core": 6,
    "bridge_local.server": 7,
    "bridge_local.peerlinks": 7,
    "bridge_local.files": 8,
    "bridge_local.chat": 9,
    "bridge_local.__main__": 10,
}
# The one upward edge, on purpose: `toxbridge demo` runs the demo built from the testing tools.
EXCEPTIONS = {("toxbridge.cli.main", "toxbridge.testing"),
              ("toxbridge.cli.main", "toxbridge.testing.demo")}


def module_files(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the product packages, by dotted name (a package by its own name)."""
    found = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _imported_names(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """Dotted names imported anywhere in ``tree`` (relative imports resolved); for ``from X
    import a`` both ``X`` and ``X.a`` (the caller keeps those that are modules)."""
    names: set[str] = set()
    base = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                up = base[: len(base) - (node.level - 1)]
                target = ".".join(up + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names.add(target)
            names.update(f"{target}.{alias.name}" for alias in node.names)
    return names


def import_graph(files: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the project modules it imports. Importing ``a.b.c`` runs ``a`` and ``a.b``
    too, so their ``__init__`` count, but for the importer's own parent packages (Python has
    them half-imported already, and they import their children by design)."""
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(), str(path))
        own = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 2)}
        deps: set[str] = set()
        for name in _imported_names(tree, module, path.name == "__init__.py"):
            parts = name.split(".")
            for i in range(1, len(parts) + 1):
                dep = ".".join(parts[:i])
                if dep in files and dep not in own:
                    deps.add(dep)
        graph[module] = deps
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path ``[a, b, ..., a]``, or None."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def layer_of(module: str) -> str | None:
    if module in PACKAGES:
        return "root"
    if module.startswith("bridge_local."):
        return "bridge_local"
    return _longest(LAYER_OF, module)


def _longest(table: dict[str, object], module: str):
    parts = module.split(".")
    for i in range(len(parts), 0, -1):
        key = ".".join(parts[:i])
        if key in table:
            return table[key]
    return None


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    """Each import that goes up a layer (or into an unknown one), as ``a -> b (why)``."""
    bad = []
    for module, deps in sorted(graph.items()):
        layer = layer_of(module)
        if layer is None:
            bad.append(f"{module} has no layer: give it one in tests/test_layers.py")
            continue
        for dep in sorted(deps):
            if (module, dep) in EXCEPTIONS:
                continue
            dep_layer = layer_of(dep)
            if dep_layer == "root":
                continue
            if dep_layer != layer and dep_layer not in ALLOWED[layer]:
                bad.append(f"{module} -> {dep} ({layer} may not import {dep_layer})")
            elif layer == dep_layer == "bridge_local":
                rank, dep_rank = _longest(BRIDGE_LOCAL_RANK, module), _longest(BRIDGE_LOCAL_RANK, dep)
                if rank is None or dep_rank is None:
                    bad.append(f"{module} -> {dep}: rank both in BRIDGE_LOCAL_RANK")
                elif dep_rank > rank:
                    bad.append(f"{module} -> {dep} (rank {rank} may not import rank {dep_rank})")
    return bad


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph(module_files())


def test_no_module_of_the_tree_is_part_of_an_import_cycle(graph):
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_nothing_imports_from_a_higher_layer(graph):
    assert layer_violations(graph) == []


def test_no_product_module_imports_the_testing_tools(graph):
    users = {(m, d) for m, deps in graph.items() if layer_of(m) != "testing"
             for d in deps if d.startswith("toxbridge.testing")}
    assert users <= EXCEPTIONS


def test_the_transport_imports_only_itself_and_the_errors(graph):
    """toxbridge.transport is pure: the stdlib and toxbridge.errors, nothing else of ours."""
    deps = {d for m, ds in graph.items() if m.startswith("toxbridge.transport") for d in ds}
    assert deps - {"toxbridge.errors"} == {d for d in deps if d.startswith("toxbridge.transport")}
    assert any(m.startswith("toxbridge.transport.") for m in graph)


def test_the_checker_finds_cycles_upward_imports_and_lazy_ones(tmp_path):
    """The checks above can fail: a tree with a lazy cycle and an upward import."""
    (tmp_path / "toxbridge" / "link").mkdir(parents=True)
    (tmp_path / "bridge_local").mkdir()
    (tmp_path / "toxbridge" / "__init__.py").write_text("")
    (tmp_path / "toxbridge" / "link" / "__init__.py").write_text("from .machine import Link\n")
    (tmp_path / "toxbridge" / "link" / "machine.py").write_text(
        "def f():\n    from ..daemon import Daemon\n")
    (tmp_path / "toxbridge" / "daemon.py").write_text("from .link import Link\n")
    (tmp_path / "bridge_local" / "__init__.py").write_text("")
    (tmp_path / "bridge_local" / "protocol.py").write_text("from bridge_local import core\n")
    (tmp_path / "bridge_local" / "core.py").write_text("import toxbridge.daemon\n")
    g = import_graph(module_files(tmp_path))
    assert g["toxbridge.link.machine"] == {"toxbridge.daemon"}
    assert g["toxbridge.daemon"] == {"toxbridge.link"}
    cycle = find_cycle(g)
    assert cycle is not None and cycle[0] == cycle[-1] and "toxbridge.daemon" in cycle
    bad = layer_violations(g)
    assert "toxbridge.link.machine -> toxbridge.daemon (channel may not import daemon)" in bad
    assert "bridge_local.core -> toxbridge.daemon (bridge_local may not import daemon)" in bad
    assert "bridge_local.protocol -> bridge_local.core (rank 0 may not import rank 6)" in bad


def test_the_stream_mux_imports_only_the_errors_and_the_stdlib(graph):
    """toxbridge.streams is pure (its __init__ says so): no Link, no Tox, no third party."""
    import sys

    files = module_files()
    for module, path in files.items():
        if not module.startswith("toxbridge.streams"):
            continue
        assert graph[module] <= {"toxbridge.errors"} | {m for m in files
                                                        if m.startswith("toxbridge.streams")}
        tree = ast.parse(path.read_text())
        for name in _imported_names(tree, module, path.name == "__init__.py"):
            top = name.split(".")[0]
            assert top in ("toxbridge", "__future__") or top in sys.stdlib_module_names, name
