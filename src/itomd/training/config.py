r"""The options of a training run: :class:`TrainingConfig` (TOML ↔ dataclass).

One flat table, because it is what users write in ``--config FILE`` and what a run directory records
(``config.toml``); the estimator reads it through typed views (:attr:`TrainingConfig.network`).

Recipes are such tables shipped inside the package (``src/itomd/recipes/NAME.toml``) and addressed by
name: ``itomd train --config ala2-ito`` (:func:`recipe_names`, :func:`config_source`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import tomllib
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from itomd.diffusion.bopito import check_dynamic_part, check_eigenvalue
from itomd.errors import DataFileError, InvalidInputError
from itomd.representation import NetworkSize, TrainingSize
from itomd.validation import is_finite_number, require_int

LAG_DISTRIBUTIONS = ("fixed", "uniform", "log-uniform")
#: Config fields that may change when a run is resumed (they do not change what a step computes).
RESUMABLE_CHANGES = frozenset({"max_steps", "minutes", "checkpoint_every", "log_every", "device", "compile"})
#: Config fields whose default (None) the system decides (:meth:`TrainingConfig.with_system_defaults`).
SYSTEM_DEFAULTS = ("batch_size", "hidden", "start_balance")
#: The folder of the shipped recipes (package data; one TOML file per recipe).
RECIPES = Path(str(files("itomd") / "recipes"))


def _recipe_key(name: str) -> str:
    """A recipe's name as users type it: ``ala2_ito`` and ``ala2-ito`` are one recipe."""
    return name.strip().lower().replace("_", "-")


def recipe_names() -> list[str]:
    """The names of the shipped training recipes, sorted (e.g. ``["ala2-ito"]``)."""
    return sorted(_recipe_key(path.stem) for path in RECIPES.glob("*.toml"))


def config_source(name_or_path: str | os.PathLike) -> Path:
    """The TOML file that ``--config`` names: an existing file, else a shipped recipe of that name.

    Parameters
    ----------
    name_or_path : str or path-like
        The path of a TOML file, or a recipe name (``-`` and ``_`` are interchangeable, case is
        ignored). An existing file wins over a recipe of the same name.

    Returns
    -------
    Path
        The file to read with :meth:`TrainingConfig.from_toml`.

    Raises
    ------
    DataFileError
        ``name_or_path`` looks like a path (a folder separator or a ``.toml`` suffix) and no file is there.
    InvalidInputError
        Neither a file nor a recipe; the message lists the recipes.
    """
    path = Path(name_or_path)
    if path.is_file():
        return path
    text = os.fspath(name_or_path)
    choices = ", ".join(recipe_names())
    if os.sep in text or "/" in text or path.suffix:
        raise DataFileError(f"no config file at {path} (shipped recipes, usable by name: {choices})")
    key = _recipe_key(text)
    for recipe in RECIPES.glob("*.toml"):
        if _recipe_key(recipe.stem) == key:
            return recipe
    raise InvalidInputError(f"unknown recipe {text!r}: choose one of {choices} or give the path of a TOML file")


@dataclass
class TrainingConfig:
    """Hyper-parameters of a training run (TOML keys have the same names).

    Parameters
    ----------
    max_lag : int
        Largest lag N (frames) of the pairs.
    lag_distribution : {"log-uniform", "uniform", "fixed"}
        Distribution of N on {1..max_lag} ("fixed": always max_lag).
    equilibrium : bool
        Train an unconditional model of the frames (the Boltzmann-generator part of BoPITO).
    prior : str, optional
        Train a BoPITO model with this frozen equilibrium part: ``"exact"`` (the quadrature score
        of the data's system, dimension ≤ 3), ``"forcefield"`` (the system's forces blended with the
        data's Gaussian across noise levels), ``"forcefield:RUN"`` (blended with the equilibrium model
        RUN instead) or the path of an equilibrium model (a run directory of ``equilibrium = true`` or
        its ``model.pt``). None: plain ITO. :func:`~itomd.models.prior_named` turns it into a prior
        object, which is passed to :meth:`~itomd.training.ITOEstimator.fit`.
    lambda_hat : float, optional
        BoPITO's λ̂ per frame; default: the slowest non-unit eigenvalue of an MSM at lag 1 frame of
        the training data (:func:`~itomd.analysis.msm.slowest_eigenvalue`), raised if needed so that
        λ̂^max_lag ≥ :data:`MIN_DYNAMIC_WEIGHT` (with a warning).
    dynamic_part : {"residual", "linear", "transition"}, optional
        BoPITO only: how the dynamic part is formed (:class:`~itomd.diffusion.BoPITODenoiser`). None:
        the system's (:attr:`~itomd.representation.Representation.bopito_dynamic_part`: "transition"
        for molecules, "residual" for points). ``"residual"``: the original D_eq + λ̂^N σ F, whose network
        must learn the shift towards x_t itself; ``"linear"``: started from the linear-Gaussian transition denoiser's
        departure from its equilibrium limit (measured: helps Müller–Brown's kinetics, not alanine
        dipeptide's, whose validity it lowered — BENCHMARKS.md, "BoPITO's linear part");
        ``"transition"``: λ̂^N times an ITO-preconditioned transition denoiser's departure from D_eq
        (molecules: targets superposed on x_t, as ITO's). Run directories written with the boolean
        ``linear_dynamic_part`` are read as "linear" (true) or "residual" (false).
    batch_size : int, optional
        Global batch (pairs per optimiser step, summed over data-parallel processes). None: the
        system's default (:meth:`~itomd.representation.Representation.training_size`), filled in when
        training starts and recorded in the run: 512 for points, for molecules 64 at 22 atoms scaled
        with 1/n_atoms² (floor 16).
    start_balance : float, optional
        Exponent a ∈ [0, 1] of the start weights n(x_t)^(−a) of the training pairs
        (:func:`~itomd.data.pairs.balanced_start_weights`; n: frames in x_t's cell of a histogram of
        the slow coordinates, capped at an evenly filled cell's): rare states are drawn more often,
        the conditional density learned is the same. 0: uniform starts; 1: the data's density capped
        at an even one. None: the system's default, filled in like ``batch_size`` (1 for points: over
        four training seeds of the demo's Müller–Brown model it removed the runs 10–18 % too fast and
        left one 19–30 % too slow — BENCHMARKS.md, "Balanced starts"; 0 for molecules, where it is not
        measured). Transition models only.
    learning_rate : float
        AdamW learning rate after a linear warm-up of ``warmup_steps``; cosine decay to
        ``final_lr_fraction`` × it over ``max_steps``.
    warmup_steps, max_steps : int
    final_lr_fraction : float
    weight_decay : float
    minutes : float, optional
        Wall-clock budget of this invocation (stops early, checkpointed; resume to continue).
    ema_decay : float
        Decay of the exponential moving average of the weights used for sampling.
    grad_clip : float
        Gradient-norm clip (0: none).
    hidden, n_blocks, n_frequencies : int
        Network size: width, depth (MLP residual blocks, or message-passing layers of the
        equivariant network for molecules) and embedding frequencies (:attr:`network`). ``hidden``
        None: the system's default, filled in like ``batch_size`` (128 MLP units for points, 32
        channels for molecules).
    p_mean : float, optional
        Mean of ln(σ/σ_d) in training; default EDM's −1.2 + ln 2 (EDM's −1.2 for σ_d = 0.5).
    p_std : float
        Standard deviation of ln σ in training.
    checkpoint_every, log_every : int
        Steps between checkpoints / metric rows.
    seed : int
        Seeds initialisation and every batch.
    device : str
        "auto" (CUDA when present, else CPU), "cpu" or "cuda[:k]".
    compile : bool
        Molecules: train the equivariant network through ``torch.compile`` (the same function, fused
        message sums; 1.6–1.8× the steps per second on a CPU at alanine dipeptide's size; the first step
        compiles, 20–60 s cold). Where compiling fails it warns once and trains eagerly. Speed only:
        a run may be resumed with or without it.
    """

    max_lag: int = 100
    lag_distribution: str = "log-uniform"
    equilibrium: bool = False
    prior: str | None = None
    lambda_hat: float | None = None
    dynamic_part: str | None = None
    batch_size: int | None = None
    start_balance: float | None = None
    learning_rate: float = 2e-3
    warmup_steps: int = 200
    max_steps: int = 20_000
    final_lr_fraction: float = 0.05
    weight_decay: float = 0.0
    minutes: float | None = None
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    hidden: int | None = None
    n_blocks: int = 3
    n_frequencies: int = 16
    p_mean: float | None = None
    p_std: float = 1.2
    checkpoint_every: int = 500
    log_every: int = 50
    seed: int = 0
    device: str = "auto"
    compile: bool = False

    def __post_init__(self) -> None:
        for name in ("max_lag", "batch_size", "max_steps", "hidden", "n_blocks", "n_frequencies",
                     "checkpoint_every", "log_every"):
            if getattr(self, name) is not None or name not in SYSTEM_DEFAULTS:
                require_int(name, getattr(self, name), 1)
        for name in ("warmup_steps", "seed"):
            require_int(name, getattr(self, name), 0)
        if self.lag_distribution not in LAG_DISTRIBUTIONS:
            raise InvalidInputError(f"lag_distribution must be one of {', '.join(LAG_DISTRIBUTIONS)}, "
                                    f"got {self.lag_distribution!r}")
        for name in ("learning_rate", "p_std"):
            if not is_finite_number(getattr(self, name)) or not getattr(self, name) > 0:
                raise InvalidInputError(f"{name} must be a positive number, got {getattr(self, name)!r}")
        for name in ("weight_decay", "grad_clip", "final_lr_fraction"):
            if not is_finite_number(getattr(self, name)) or not getattr(self, name) >= 0:
                raise InvalidInputError(f"{name} must be a non-negative number, got {getattr(self, name)!r}")
        if not (is_finite_number(self.ema_decay) and 0 <= self.ema_decay < 1):
            raise InvalidInputError(f"ema_decay must be in [0, 1), got {self.ema_decay!r}")
        if self.minutes is not None and not (is_finite_number(self.minutes) and self.minutes > 0):
            raise InvalidInputError(f"minutes must be a positive number, got {self.minutes!r}")
        if self.start_balance is not None and not (is_finite_number(self.start_balance)
                                                   and 0 <= self.start_balance <= 1):
            raise InvalidInputError(f"start_balance must be a number in [0, 1], got {self.start_balance!r}")
        if self.p_mean is not None and not is_finite_number(self.p_mean):
            raise InvalidInputError(f"p_mean must be a number, got {self.p_mean!r}")
        if not isinstance(self.equilibrium, bool):
            raise InvalidInputError(f"equilibrium must be true or false, got {self.equilibrium!r}")
        if self.dynamic_part is not None:
            check_dynamic_part(self.dynamic_part)
            if self.prior is None:
                raise InvalidInputError(f"dynamic_part {self.dynamic_part!r} is BoPITO's: it needs a prior "
                                        "(--prior exact or an equilibrium run)")
        if self.prior is not None and (not isinstance(self.prior, str) or not self.prior):
            raise InvalidInputError(f"prior must be 'exact', 'forcefield', 'forcefield:RUN' or the path of an equilibrium "
                                    f"model, got {self.prior!r}")
        if self.prior is not None and self.equilibrium:
            raise InvalidInputError("an equilibrium model takes no prior (the prior is an equilibrium model)")
        if self.lambda_hat is not None:
            if self.prior is None:
                raise InvalidInputError("lambda_hat is BoPITO's: it needs a prior (--prior exact or an equilibrium run)")
            check_eigenvalue(self.lambda_hat, "lambda_hat")

    @classmethod
    def from_toml(cls, path: str | os.PathLike, **overrides: Any) -> "TrainingConfig":
        """Read a TOML file of ``key = value`` lines (a ``[training]`` table is also accepted);
        ``overrides`` that are not None replace file values."""
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DataFileError(f"no config file at {path}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise DataFileError(f"cannot read the config file {path}: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise InvalidInputError(f"{path} is not valid TOML: {exc}") from None
        if set(data) == {"training"} and isinstance(data["training"], dict):
            data = data["training"]
        return cls.from_dict(data, source=str(path), **overrides)

    @classmethod
    def from_recipe(cls, name_or_path: str | os.PathLike, **overrides: Any) -> "TrainingConfig":
        """The config of a shipped recipe (``"ala2-ito"``) or of a TOML file (:func:`config_source`);
        ``overrides`` as in :meth:`from_toml`."""
        return cls.from_toml(config_source(name_or_path), **overrides)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config", **overrides: Any) -> "TrainingConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        if "linear_dynamic_part" in data and "dynamic_part" not in data:  # run directories of an earlier version
            data = dict(data)
            legacy = data.pop("linear_dynamic_part")
            if not isinstance(legacy, bool):
                raise InvalidInputError(f"{source}: linear_dynamic_part must be true or false, got {legacy!r}")
            if data.get("prior") is not None:  # an ITO run recorded the boolean too, meaning nothing
                data["dynamic_part"] = "linear" if legacy else "residual"
        unknown = sorted(set(data) - names)
        if unknown:
            raise InvalidInputError(f"{source}: unknown training option(s) {', '.join(unknown)}")
        merged = {**data, **{k: v for k, v in overrides.items() if v is not None}}
        return cls(**merged)

    def with_system_defaults(self, size: TrainingSize) -> "TrainingConfig":
        """This config with the options it leaves to the system (None) taken from ``size``
        (:meth:`~itomd.representation.Representation.training_size`); a new config, or itself when
        nothing was left open."""
        filled = {name: getattr(size, name) for name in SYSTEM_DEFAULTS if getattr(self, name) is None}
        return dataclasses.replace(self, **filled) if filled else self

    @property
    def network(self) -> NetworkSize:
        """The inner network's size (after :meth:`with_system_defaults` when ``hidden`` is left open)."""
        if self.hidden is None:
            raise InvalidInputError("the network width is the system's default: call with_system_defaults first")
        return NetworkSize(self.hidden, self.n_blocks, self.n_frequencies)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_toml(self) -> str:
        """The config as TOML (None values are left out: they mean 'default')."""
        lines = []
        for key, value in self.to_dict().items():
            if value is None:
                continue
            lines.append(f"{key} = {json.dumps(value) if not isinstance(value, bool) else str(value).lower()}")
        return "\n".join(lines) + "\n"
