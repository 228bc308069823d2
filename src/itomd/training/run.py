r"""A training run directory: checkpoints, the model, the config and the metrics — and exact resume.

With a run directory the estimator writes, atomically: ``checkpoint.pt`` (every
``checkpoint_every`` steps and at the end: weights, EMA weights, optimizer state, the batch
generator's state, the step count), ``model.pt`` (the EMA model, sampleable at any time),
``config.toml`` and ``metrics.jsonl`` (one JSON row per ``log_every`` steps: step, loss, learning
rate, steps/s, elapsed seconds). Resuming continues from ``checkpoint.pt`` exactly: the parameters
after N steps are bit-identical whether or not the run was killed in between.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from itomd.checkpoint import load_file, save_atomically
from itomd._files import create_directory, write_text_atomically
from itomd.errors import DataFileError, InvalidInputError
from itomd.models import DenoiserSpec, TransitionModel
from itomd.training.config import RESUMABLE_CHANGES, TrainingConfig
from itomd.training.loop import TrainingState

CHECKPOINT_FORMAT = "itomd-checkpoint"
CHECKPOINT_FORMAT_VERSION = 1
CHECKPOINT_FILE = "checkpoint.pt"
MODEL_FILE = "model.pt"


class RunDirectory:
    """The files of one training run in ``path``.

    Parameters
    ----------
    path : str or os.PathLike
    """

    def __init__(self, path: "str | Path"):
        self.path = Path(path)

    @property
    def checkpoint_path(self) -> Path:
        return self.path / CHECKPOINT_FILE

    @property
    def model_path(self) -> Path:
        return self.path / MODEL_FILE

    def has_checkpoint(self) -> bool:
        return self.checkpoint_path.exists()

    def start(self, config: TrainingConfig, step: int) -> "MetricsLog":
        """Create the directory, record the config and open the metrics log at ``step``."""
        create_directory(self.path)
        write_text_atomically(self.path / "config.toml", config.to_toml())
        return MetricsLog(self.path / "metrics.jsonl", keep_through_step=step)

    def save(self, config: TrainingConfig, spec: DenoiserSpec, data_summary: dict[str, Any], state: TrainingState,
             model: TransitionModel) -> None:
        """Write the checkpoint and the model (each atomically)."""
        save_atomically({"format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_FORMAT_VERSION,
                         "config": config.to_dict(), "spec": spec.to_dict(), "data": data_summary,
                         **state.state_dict()}, self.checkpoint_path)
        model.save(self.model_path)

    def load_checkpoint(self, config: TrainingConfig, data_summary: dict[str, Any]) -> dict[str, Any]:
        """The checkpoint, checked against this config and data (one-line errors otherwise)."""
        checkpoint = _load_checkpoint(self.checkpoint_path)
        _check_resumable(checkpoint, config, data_summary)
        return checkpoint


def _load_checkpoint(path: Path) -> dict[str, Any]:
    checkpoint = load_file(path, what="checkpoint")
    if checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise DataFileError(f"{path} is not an itomd training checkpoint")
    if checkpoint.get("format_version") != CHECKPOINT_FORMAT_VERSION:
        raise DataFileError(f"{path} has checkpoint format version {checkpoint.get('format_version')}; "
                            f"this itomd reads version {CHECKPOINT_FORMAT_VERSION}")
    missing = {"config", "spec", "data", "step", "denoiser", "ema", "optimizer", "generator"} - set(checkpoint)
    if missing:
        raise DataFileError(f"{path} lacks {', '.join(sorted(missing))}")
    return checkpoint


def _check_resumable(checkpoint: dict[str, Any], config: TrainingConfig, data_summary: dict[str, Any]) -> None:
    recorded = checkpoint["config"]
    # keys a checkpoint lacks were added since it was written: its model description (spec) keeps the old behaviour
    changed = [f"{k} {recorded.get(k)!r} → {v!r}" for k, v in config.to_dict().items()
               if k not in RESUMABLE_CHANGES and k in recorded and recorded[k] != v]
    if changed:
        raise InvalidInputError("cannot resume with a different configuration: " + "; ".join(changed[:4]))
    old = checkpoint["data"]
    if (old.get("n_trajectories"), old.get("n_frames")) != (data_summary["n_trajectories"], data_summary["n_frames"]) \
            or not np.allclose(old.get("mean"), data_summary["mean"], rtol=0, atol=1e-12):
        raise InvalidInputError("cannot resume on different data: the run was trained on "
                                f"{old.get('n_trajectories')} trajectories / {old.get('n_frames')} frames, "
                                f"got {data_summary['n_trajectories']} / {data_summary['n_frames']}")


class MetricsLog:
    """``metrics.jsonl``: rows after the resumed step are dropped, then rows are appended."""

    def __init__(self, path: Path, keep_through_step: int):
        self.path = path
        rows = []
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line torn by a crash
                if isinstance(row, dict) and row.get("step", math.inf) <= keep_through_step:
                    rows.append(line)
        write_text_atomically(path, "".join(r + "\n" for r in rows))

    def append(self, row: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")
            handle.flush()
