"""Packaging: ``python -m build`` makes an sdist and a wheel (no deprecation warning), the
sdist carries the package data and the toxcore set-up script, and the wheel installed
non-editable into a fresh venv runs ``toxbridge --help``, finds its data and loads the
toxcore binding. The build is isolated, as a user's is (it takes setuptools>=77 from pip's
cache or index); the fresh venv borrows this venv's dependencies through a ``.pth`` file."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

pytestmark = [pytest.mark.packaging, pytest.mark.xdist_group("packaging"), pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parent.parent
SKIP = shutil.ignore_patterns(".git", ".venv", "__pycache__", "build", "dist", "*.egg-info",
                              ".pytest_cache", ".hypothesis", "prefix")


def sh(*cmd, cwd: Path | None = None, timeout: float = 120) -> str:
    r = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{' '.join(map(str, cmd))} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    return r.stdout + r.stderr


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    """sdist and wheel, built from a copy of the tree (the build writes egg-info there)."""
    tree = tmp_path_factory.mktemp("tree") / "toxbridge"
    shutil.copytree(ROOT, tree, ignore=SKIP)
    out = tree / "dist"
    log = sh(sys.executable, "-m", "build", "--outdir", out, tree, cwd=tree)
    assert "deprecated" not in log.lower(), log
    return out


def test_the_sdist_carries_the_package_data_and_the_setup_script(dist):
    (sdist,) = dist.glob("toxbridge-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    for wanted in ("toxbridge/data/nodes.json", "toxbridge/data/config-example.toml",
                   "native/toxcore-build.sh", "pyproject.toml", "README.md", "toxbridge/tox/_cdefs.py"):
        assert wanted in names, wanted


def test_the_wheel_installs_and_runs_in_a_fresh_venv(dist, tmp_path):
    (wheel,) = dist.glob("toxbridge-*.whl")
    with zipfile.ZipFile(wheel) as z:
        metadata = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode()
        assert "toxbridge/data/nodes.json" in z.namelist()
    assert "License-Expression: GPL-3.0-or-later" in metadata

    venv = tmp_path / "venv"
    sh(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    sh(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index",
       "--disable-pip-version-check", "-q", wheel)
    # The dependencies (cffi, trio, ...) from this venv; toxbridge itself from the wheel
    # (a .pth line adds a directory but does not run the .pth files in it, so this venv's
    # editable toxbridge stays out).
    site = Path(sh(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))").strip())
    (site / "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")

    where = sh(python, "-c", "import toxbridge, bridge_local; print(toxbridge.__file__, bridge_local.__file__)",
               cwd=tmp_path)
    assert all(Path(p).is_relative_to(venv) for p in where.split()), where
    out = sh(venv / "bin" / "toxbridge", "--help", cwd=tmp_path)
    assert out.startswith("usage: toxbridge") and "bootstrap-node" in out
    example = sh(venv / "bin" / "toxbridge", "config", "example", cwd=tmp_path)
    assert "listen = true" in example
    sh(python, "-c", "from toxbridge.cli.nodeargs import BUNDLED_NODES, read_nodes; assert len(read_nodes(BUNDLED_NODES)) >= 20",
       cwd=tmp_path)
    # The binding loads libtoxcore from the installed package (a Tox on loopback, no bootstrap).
    sh(python, "-c", "from toxbridge.network import loopback_options; from toxbridge.tox import Tox; "
       "t = Tox(loopback_options()); print(t.address_hex); t.close()", cwd=tmp_path)
