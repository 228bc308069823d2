"""A trajectory store edited by hand (issue 13): a trajectory file deleted, a file of another system's
store copied in (over one of its files, or under a new index), the manifest removed, a file truncated.

What each command does with such a store:

============================  ==========================  ====================================
edit                          analyze, train, export      simulate (re-run: resume)
============================  ==========================  ====================================
file deleted                  one line naming it, exit 2  recomputes its chunk: bit-identical
other system's file over one  one line naming it, exit 2  recomputes its chunk: bit-identical
other store's file, new index one line naming it, exit 2  one line naming it, exit 2
manifest removed              works (files describe       one line: no manifest.json, exit 2
                              themselves)
file truncated                one line naming it, exit 2  recomputes its chunk: bit-identical
============================  ==========================  ====================================
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from itomd.cli import main
from itomd.data.store import MANIFEST, TrajectoryStore, trajectory_filename
from itomd.simulate import campaign as campaign_module
from tests.cli.helpers import TINY, assert_one_line_exit

#: A small Prinz campaign: 6 trajectories of 60 frames in chunks of 2.
SIMULATE = ["--n-traj", "6", "--n-frames", "60", "--seed", "4", "--chunk-size", "2", "--workers", "0", "--quiet"]
EDITS = ("deleted", "foreign-over", "foreign-new-index", "manifest-removed", "truncated")


def simulate_argv(system: str, out: Path) -> list[str]:
    return ["simulate", "--system", system, "--out", str(out), *SIMULATE]


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> dict[str, Path]:
    """The Prinz store to edit, a double-well store of the same parameters (its files carry the same seed,
    chunk and index metadata; only the system differs) and a tiny alanine dipeptide store for export."""
    root = tmp_path_factory.mktemp("edits")
    paths = {"prinz": root / "prinz", "other": root / "double-well", "ala2": root / "ala2", "root": root}
    assert main(simulate_argv("prinz", paths["prinz"])) == 0
    assert main(simulate_argv("double-well", paths["other"])) == 0
    assert main(["simulate", "--system", "ala2", "--out", str(paths["ala2"]), "--n-traj", "3", "--n-frames", "4",
                 "--chunk-size", "1", "--workers", "0", "--quiet"]) == 0
    (root / "tiny.toml").write_text(TINY)
    return paths


def edited(source: Path, other: Path, edit: str, tmp_path: Path) -> tuple[Path, str]:
    """A copy of ``source`` with one hand edit; returns it and the file name the error must name."""
    store = Path(shutil.copytree(source, tmp_path / source.name))
    name = trajectory_filename(1)
    if edit == "deleted":
        (store / name).unlink()
    elif edit == "foreign-over":
        shutil.copy(other / name, store / name)
    elif edit == "foreign-new-index":
        name = trajectory_filename(99)
        shutil.copy(other / trajectory_filename(0), store / name)
    elif edit == "manifest-removed":
        (store / MANIFEST).unlink()
        name = MANIFEST
    elif edit == "truncated":
        data = (store / name).read_bytes()
        (store / name).write_bytes(data[: len(data) // 2])
    return store, name


def read_all(store: Path) -> list[np.ndarray]:
    return TrajectoryStore(store).trajectories()


@pytest.mark.parametrize("edit", EDITS)
def test_analyze_and_train_name_the_edited_file(stores, edit, tmp_path, capsys):
    store, name = edited(stores["prinz"], stores["other"], edit, tmp_path)
    analyze = main(["analyze", str(store), "--lags", "1", "--n-states", "4", "--n-timescales", "1", "--quiet"])
    if edit == "manifest-removed":
        assert analyze == 0
        capsys.readouterr()
    else:
        assert_one_line_exit(capsys, analyze, name)
    train = main(["train", "--data", str(store), "--out", str(tmp_path / "run"), "--config",
                  str(stores["root"] / "tiny.toml"), "--max-steps", "1", "--quiet"])
    if edit == "manifest-removed":
        assert train == 0
    else:
        assert_one_line_exit(capsys, train, name)


@pytest.mark.parametrize("edit", ["deleted", "foreign-new-index", "manifest-removed", "truncated"])
def test_export_names_the_edited_file(stores, edit, tmp_path, capsys):
    store, name = edited(stores["ala2"], stores["ala2"], edit, tmp_path)
    code = main(["export", str(store), "--format", "pdb", "--out", str(tmp_path / "pdb")])
    if edit == "manifest-removed":
        assert code == 0 and len(list((tmp_path / "pdb").glob("traj_*.pdb"))) == 3
    else:
        assert_one_line_exit(capsys, code, name)


def test_export_names_a_file_of_another_system(stores, tmp_path, capsys):
    store, name = edited(stores["ala2"], stores["prinz"], "foreign-over", tmp_path)
    assert_one_line_exit(capsys, main(["export", str(store), "--format", "pdb", "--out", str(tmp_path / "o")]), name)


@pytest.mark.parametrize("edit", ["deleted", "foreign-over", "truncated"])
def test_resumed_simulate_recomputes_the_edited_chunk_bit_for_bit(stores, edit, tmp_path):
    store, _ = edited(stores["prinz"], stores["other"], edit, tmp_path)
    assert main(simulate_argv("prinz", store)) == 0
    original, resumed = read_all(stores["prinz"]), read_all(store)
    assert len(resumed) == len(original) and all(np.array_equal(a, b) for a, b in zip(original, resumed))
    assert TrajectoryStore(store).read_metadata(1)["system"] == "prinz"


@pytest.mark.parametrize("edit", ["foreign-new-index", "manifest-removed"])
def test_resumed_simulate_refuses_what_it_cannot_vouch_for(stores, edit, tmp_path, capsys):
    store, name = edited(stores["prinz"], stores["other"], edit, tmp_path)
    before = {p.name: p.read_bytes() for p in store.iterdir() if p.is_file()}
    assert_one_line_exit(capsys, main(simulate_argv("prinz", store)), name)
    assert {p.name: p.read_bytes() for p in store.iterdir() if p.is_file()} == before  # nothing touched


def test_the_resume_check_is_what_catches_the_foreign_file(stores, tmp_path, monkeypatch):
    """Negative control: without the system check, a double-well file with the campaign's seed, chunk and
    index passes for a Prinz trajectory, and the resumed store silently mixes systems."""
    store, _ = edited(stores["prinz"], stores["other"], "foreign-over", tmp_path)
    monkeypatch.setattr(campaign_module, "_SYSTEM_KEYS", ())
    assert main(simulate_argv("prinz", store)) == 0
    assert TrajectoryStore(store).read_metadata(1)["system"] == "double-well"
