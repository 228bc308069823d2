"""Packaging: ``--version``, the license, and a wheel that works outside the source tree.

The wheel is built offline from a copy of the sources (``pyproject.toml``, ``README.md``, ``LICENSE``,
``src/itomd``) with the project environment's setuptools (no build isolation, no index), and installed
with ``--no-deps`` into a fresh virtual environment in a temporary directory. Its dependencies come
from the project environment's site-packages through one ``.pth`` line: a plain path, so the editable
install's own ``.pth`` in there is not processed and ``import itomd`` finds the wheel's copy (the
tests assert it). Commands run from a directory outside the tree.
"""

from __future__ import annotations

import email
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import pytest

import itomd
from itomd.cli import main

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "itomd"


def _run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{args}\n{proc.stdout}\n{proc.stderr}"
    return proc


@dataclass
class Installed:
    """A wheel of itomd installed into a fresh environment outside the source tree."""

    wheel: Path
    python: Path
    itomd: Path
    workdir: Path
    env: dict[str, str]

    def run(self, *args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess:
        """Run a program of the environment (``itomd``, ``python``) in :attr:`workdir`."""
        return _run(*args, cwd=self.workdir, env=self.env, timeout=timeout)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    base = tmp_path_factory.mktemp("packaging")
    assert not base.resolve().is_relative_to(ROOT)
    source = base / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(PACKAGE, source / "src" / "itomd", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    quiet = ["--quiet", "--disable-pip-version-check", "--no-index"]
    _run(sys.executable, "-m", "pip", "wheel", *quiet, "--no-deps", "--no-build-isolation", ".", "-w", base / "dist",
         cwd=source)
    (wheel,) = (base / "dist").glob("itomd-*.whl")

    venv = base / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=base)
    python = venv / "bin" / "python"
    _run(sys.executable, "-m", "pip", "--python", python, "install", *quiet, "--no-deps", wheel, cwd=base)
    purelib = _run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=base).stdout.strip()
    # the dependencies (torch, openmm, ...): the project environment's site-packages, after the venv's own
    (Path(purelib) / "itomd_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    workdir = base / "work"
    workdir.mkdir()
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", OMP_NUM_THREADS="1", TQDM_DISABLE="1")
    return Installed(wheel, python, venv / "bin" / "itomd", workdir, env)


def test_version_flag_prints_the_installed_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"itomd {version('itomd')}\n"
    assert itomd.__version__ == version("itomd") != "0.0.0+unknown"


def test_license_is_an_spdx_expression_and_shipped():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT" and project["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "Copyright (c) 2026 the itomd authors" in text


def test_wheel_holds_every_package_file_and_the_license(installed):
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = set(wheel.namelist())
        metadata = email.message_from_string(wheel.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode())
    shipped = {name for name in names if name.startswith("itomd/")}
    sources = {f"itomd/{path.relative_to(PACKAGE).as_posix()}" for path in PACKAGE.rglob("*")
               if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"}
    assert "itomd/recipes/ala2_ito.toml" in sources
    assert sources == shipped, (sorted(sources - shipped), sorted(shipped - sources))  # data files included
    assert metadata["License-Expression"] == "MIT" and "License" not in metadata
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)


def test_installed_wheel_runs_outside_the_source_tree(installed, tmp_path):
    where = installed.run(installed.python, "-c", "import itomd; print(itomd.__file__, itomd.__version__)").stdout.split()
    assert not Path(where[0]).resolve().is_relative_to(ROOT), where  # the wheel's copy, not the editable source
    assert installed.run(installed.itomd, "--version").stdout == f"itomd {where[1]}\n"
    assert where[1] == version("itomd")

    store = tmp_path / "prinz"  # written in this process; the installed itomd trains on it
    assert main(["simulate", "--system", "prinz", "--n-traj", "2", "--n-frames", "40", "--seed", "1", "--workers", "0",
                 "--out", str(store), "--quiet"]) == 0
    run = installed.workdir / "run"
    # the recipe by name, read from the installed package (the working directory has no file of that name)
    installed.run(installed.itomd, "train", "--data", store, "--out", run, "--config", "ala2-ito", "--max-lag", "5",
                  "--max-steps", "2", "--device", "cpu", "--quiet")
    recorded = (run / "config.toml").read_text().splitlines()
    assert "hidden = 32" in recorded and "batch_size = 64" in recorded and (run / "model.pt").is_file()


@pytest.mark.slow
def test_installed_wheel_simulates_a_molecule_from_its_shipped_files(installed):
    """The molecule's files (openmmtools' Amber files, the topology written into the store) are found
    by the installed package: a 3-frame alanine-dipeptide campaign and its PDB export (~10 s)."""
    store = installed.workdir / "ala2"
    installed.run(installed.itomd, "simulate", "--system", "ala2-implicit", "--n-traj", "1", "--n-frames", "3",
                  "--workers", "0", "--out", store, "--quiet")
    assert (store / "topology.pdb").is_file()
    installed.run(installed.itomd, "export", store, "--format", "pdb", "--out", installed.workdir / "ala2-pdb")
    assert len(list((installed.workdir / "ala2-pdb").glob("*.pdb"))) == 2  # the trajectory and topology.pdb
