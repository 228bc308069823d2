r"""Typed descriptions of denoisers: :class:`DenoiserSpec` and BoPITO's priors :class:`ExactPrior`,
:class:`LearnedPrior` and :class:`ForceFieldPrior`.

A description holds everything needed to rebuild a denoiser — the representation of the states
(:mod:`itomd.representation`: which inner network, centring, isotropic tables), the network size,
the data scales and, for BoPITO, the frozen equilibrium part and λ̂ — but no weights. Each has
``build()`` (a fresh module of that shape) and ``to_dict()``/``from_dict()`` for model files; the
dicts (with a ``"kind"`` tag for priors) exist only in files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence, Union

import numpy as np
import torch

from itomd.diffusion.bopito import BoPITODenoiser, check_dynamic_part
from itomd.diffusion.denoiser import Denoiser, TransitionDenoiser
from itomd.diffusion.equilibrium import ExactEquilibriumDenoiser
from itomd.diffusion.forcefield import (BLEND_GRID_POINTS, ForceFieldEquilibriumDenoiser, GaussianEquilibriumDenoiser,
                                        calibrate_blend)
from itomd.errors import DataFileError, InvalidInputError
from itomd.representation import NetworkSize, Representation

if TYPE_CHECKING:  # pragma: no cover
    from itomd.models.transition import TransitionModel
    from itomd.systems.reference import ExactReference
    from itomd.systems.registry import SystemSpec
    from itomd.systems.system import System

#: Largest dimension with an exact (quadrature) equilibrium prior.
MAX_EXACT_PRIOR_DIM = 3


@dataclass(frozen=True)
class ExactPrior:
    """BoPITO's equilibrium part from the exact density of a low-dimensional system (its SqRA grid).

    Parameters
    ----------
    shape : tuple of int
        Cells per axis of the grid.
    box : tuple of (low, high)
        The grid's region per coordinate.
    module : ExactEquilibriumDenoiser, optional
        The quadrature denoiser with its grid (when made from a system; a model file carries the grid
        in its weights instead).
    """

    shape: tuple[int, ...]
    box: tuple[tuple[float, float], ...]
    module: ExactEquilibriumDenoiser | None = field(default=None, compare=False, repr=False)

    @classmethod
    def of_system(cls, system: "System") -> "ExactPrior":
        """The exact prior of ``system`` (dimension ≤ :data:`MAX_EXACT_PRIOR_DIM`) on its reference grid."""
        if system.dim > MAX_EXACT_PRIOR_DIM:
            raise InvalidInputError(f"'{system.name}' has {system.dim} coordinates and no exact equilibrium prior "
                                    f"(dimension ≤ {MAX_EXACT_PRIOR_DIM}): train an equilibrium model "
                                    "(itomd train --equilibrium) and pass its run as --prior")
        from itomd.systems.reference import exact_reference

        return cls.of_reference(exact_reference(system, n_eigen=2))

    @classmethod
    def of_reference(cls, reference: "ExactReference") -> "ExactPrior":
        """The exact prior of a computed reference (its grid density)."""
        module = ExactEquilibriumDenoiser.from_reference(reference)
        return cls(tuple(int(n) for n in module.probabilities.shape),
                   tuple((float(lo), float(hi)) for lo, hi in module.box), module)

    @property
    def dim(self) -> int:
        return len(self.shape)

    @property
    def n_atoms(self) -> None:
        """Exact priors are of points, not molecules."""
        return None

    def build(self) -> torch.nn.Module:
        """An empty quadrature denoiser of this grid (the weights hold the density)."""
        return ExactEquilibriumDenoiser.empty(list(self.shape), list(self.box))

    def region(self) -> tuple[np.ndarray, np.ndarray]:
        """(low, high) per coordinate of the region the prior knows: its box."""
        box = np.asarray(self.box, dtype=float)
        return box[:, 0], box[:, 1]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "exact", "shape": list(self.shape), "box": [list(b) for b in self.box]}


@dataclass(frozen=True)
class LearnedPrior:
    """BoPITO's equilibrium part from a trained equilibrium model (a Boltzmann generator).

    Parameters
    ----------
    spec : DenoiserSpec
        The equilibrium model's description.
    data_low, data_high : tuple of float, optional
        Range of its training frames per coordinate (the region it knows).
    module : Denoiser, optional
        Its denoiser with the trained weights (when made from a model).
    """

    spec: "DenoiserSpec"
    data_low: tuple[float, ...] | None = None
    data_high: tuple[float, ...] | None = None
    module: Denoiser | None = field(default=None, compare=False, repr=False)

    @classmethod
    def of_model(cls, model: "TransitionModel") -> "LearnedPrior":
        """The prior made of a trained equilibrium model (a frozen copy of its denoiser)."""
        if model.conditional:
            raise InvalidInputError("the prior must be an equilibrium model (itomd train --equilibrium), "
                                    "not a transition model")
        module = model.spec.build()
        module.load_state_dict(model.denoiser.state_dict())
        return cls(model.spec, tuple(model.data_low.tolist()), tuple(model.data_high.tolist()), module)

    @property
    def dim(self) -> int:
        return self.spec.dim

    @property
    def n_atoms(self) -> int | None:
        return self.spec.representation.n_atoms

    def build(self) -> torch.nn.Module:
        return self.spec.build()

    def region(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(low, high) per coordinate of the equilibrium model's training data, if recorded."""
        if self.data_low is None or self.data_high is None:
            return None
        return np.asarray(self.data_low, dtype=float), np.asarray(self.data_high, dtype=float)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": "model", "spec": self.spec.to_dict()}
        if self.data_low is not None and self.data_high is not None:
            d.update(data_low=list(self.data_low), data_high=list(self.data_high))
        return d


@dataclass(frozen=True)
class ForceFieldPrior:
    """BoPITO's equilibrium part from the system's own potential, s₀ = −β∇U, blended across noise
    levels with a base that is right at large σ (:mod:`itomd.diffusion.forcefield`).

    Parameters
    ----------
    dim : int
        State dimension.
    n_atoms : int, optional
        Atoms of a molecule (None: a toy system).
    n_levels : int
        Grid levels of the calibrated blend a(σ).
    base : LearnedPrior, optional
        A trained equilibrium model as the base; None: the Gaussian of the training frames.
    system : SystemSpec, optional
        Whose potential gives the forces (a model file records it once, as the model's system).
    module : ForceFieldEquilibriumDenoiser, optional
        The calibrated denoiser (when made from data).
    """

    dim: int
    n_atoms: int | None
    n_levels: int = BLEND_GRID_POINTS
    base: LearnedPrior | None = None
    system: "SystemSpec | None" = field(default=None, compare=False, repr=False)
    module: ForceFieldEquilibriumDenoiser | None = field(default=None, compare=False, repr=False)

    @classmethod
    def of_data(cls, system: "SystemSpec", trajectories: Sequence[np.ndarray], base: LearnedPrior | None = None,
                seed: int = 0) -> "ForceFieldPrior":
        """The force-field prior of ``system``, its blend calibrated on ``trajectories`` (each [n_i, dim]).

        The base is ``base`` or, without one, the Gaussian of the frames (as the model sees them:
        molecules centred, one variance per atom).
        """
        from itomd.representation import representation_for

        built = system.build()
        representation = representation_for(built)
        representation.check_dimension(np.asarray(trajectories[0]).shape[1])
        frames = np.concatenate(representation.prepare_trajectories(trajectories)).astype(np.float64)
        n_atoms = representation.n_atoms
        if base is None and n_atoms is not None:
            raise InvalidInputError("a molecule's force-field prior needs a learned base: --prior forcefield:RUN with an "
                                    "equilibrium run (itomd train --equilibrium); a Gaussian of Cartesian coordinates "
                                    "is no molecule at the noise levels where the force field takes over")
        if base is not None and (base.dim != frames.shape[1] or base.n_atoms != n_atoms):
            raise InvalidInputError("the force-field prior's base and the data must describe the same states")
        mean = representation.data_mean(frames)
        base_module = (base.module if base is not None
                       else GaussianEquilibriumDenoiser.of_frames(frames, mean, n_atoms)).to(torch.float32)
        sigma_data = float(np.sqrt(np.mean((frames - mean) ** 2))) or 1.0
        score = built.equilibrium_score
        log_sigmas, weights = calibrate_blend(base_module, score, frames, sigma_data, seed=seed, n_atoms=n_atoms)
        module = ForceFieldEquilibriumDenoiser(base_module, log_sigmas, weights, n_atoms).attach(score)
        return cls(int(frames.shape[1]), n_atoms, len(log_sigmas), base, system, module)

    def build(self) -> torch.nn.Module:
        """An empty blended denoiser of this shape (the weights hold the blend and the base), with the
        system's forces attached when the system is known."""
        base = self.base.build() if self.base is not None else GaussianEquilibriumDenoiser(np.zeros(self.dim),
                                                                                            np.ones(self.dim))
        module = ForceFieldEquilibriumDenoiser.empty(base, self.n_levels, self.n_atoms)
        if self.system is not None:
            module.attach(self.system.build().equilibrium_score)
        return module

    def region(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The learned base's region, if any (the force field itself knows everything)."""
        return None if self.base is None else self.base.region()

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "forcefield", "dim": self.dim, "n_atoms": self.n_atoms, "n_levels": self.n_levels,
                "base": None if self.base is None else self.base.to_dict()}


Prior = Union[ExactPrior, LearnedPrior, ForceFieldPrior]


def prior_from_dict(d: dict[str, Any], system: "SystemSpec | None" = None) -> Prior:
    """The prior a model file describes (``{"kind": "exact" | "model" | "forcefield", ...}``); a
    force-field prior takes its forces from ``system``, the model's."""
    kind = d.get("kind") if isinstance(d, dict) else None
    try:
        if kind == "exact":
            return ExactPrior(tuple(int(n) for n in d["shape"]),
                              tuple((float(lo), float(hi)) for lo, hi in d["box"]))
        if kind == "model":
            low, high = d.get("data_low"), d.get("data_high")
            return LearnedPrior(DenoiserSpec.from_dict(d["spec"]), None if low is None else tuple(map(float, low)),
                                None if high is None else tuple(map(float, high)))
        if kind == "forcefield":
            base = None if d.get("base") is None else prior_from_dict(d["base"])
            if base is not None and not isinstance(base, LearnedPrior):
                raise DataFileError("a force-field prior's base must be a learned equilibrium model")
            return ForceFieldPrior(int(d["dim"]), None if d.get("n_atoms") is None else int(d["n_atoms"]),
                                   int(d["n_levels"]), base, system)
    except KeyError as exc:
        raise DataFileError(f"the {kind} prior's description lacks the entry {exc}") from None
    raise DataFileError(f"unknown equilibrium prior description {d!r}")


@dataclass(frozen=True)
class DenoiserSpec:
    """Everything needed to rebuild a denoiser (not its weights).

    Parameters
    ----------
    dim : int
        State dimension.
    conditional : bool
        Transition model (conditioned on x_t and N) or equilibrium model.
    network : NetworkSize
        Size of the inner network (which network: the representation's choice).
    sigma_data : float
        Pooled standard deviation of the centred training frames.
    shift : tuple of float, length dim
        Centre of the training frames (the mean; zero for molecules).
    condition_shift, condition_scale : tuple of float, length dim
        Standardisation of the condition (mean and std of the frames per coordinate).
    max_log_lag : float
        ln of the largest training lag.
    p_mean, p_std : float
        Training distribution of ln σ (equilibrium) or of ln(σ/σ_d(N)) (transition).
    representation : Representation
        How the states are represented (:mod:`itomd.representation`).
    lag_coefficients : tuple of tuple of float, shape [max_lag, dim], optional
    lag_scales : tuple of float, length max_lag, optional
        Lag-N regression slopes and residual RMS of the data (transition models; see
        :class:`~itomd.diffusion.TransitionDenoiser` and :func:`~itomd.models.lag_statistics`).
    prior : ExactPrior or LearnedPrior, optional
        BoPITO's frozen equilibrium part; None: a plain ITO (or equilibrium) model.
    lambda_hat : float, optional
        BoPITO's λ̂, the per-frame decay of the dynamic part.
    dynamic_part : {"residual", "linear", "transition"}
        How BoPITO's dynamic part is formed (:class:`~itomd.diffusion.BoPITODenoiser`); "residual" in
        model files written before the choice existed (those with ``linear_dynamic_part = true``: "linear").
    """

    dim: int
    conditional: bool
    network: NetworkSize
    sigma_data: float
    shift: tuple[float, ...]
    condition_shift: tuple[float, ...]
    condition_scale: tuple[float, ...]
    max_log_lag: float
    p_mean: float
    p_std: float
    representation: Representation
    lag_coefficients: tuple[tuple[float, ...], ...] | None = None
    lag_scales: tuple[float, ...] | None = None
    prior: Prior | None = None
    lambda_hat: float | None = None
    dynamic_part: str = "residual"

    @property
    def is_bopito(self) -> bool:
        """A BoPITO transition model (frozen equilibrium part + decaying dynamic part)."""
        return self.prior is not None

    def build(self) -> Denoiser:
        """A freshly initialised denoiser (float32, CPU) of this shape (a prior's weights are loaded
        with the state dict)."""
        try:
            return self._build()
        except InvalidInputError as exc:  # a description no training run writes
            raise DataFileError(f"inconsistent model description: {exc}") from None

    def _build(self) -> Denoiser:
        self.representation.check_dimension(self.dim)
        inner = self.representation.inner_network(self.network, self.conditional, self.max_log_lag,
                                                  self.condition_shift, self.condition_scale)
        atoms = {"n_atoms": self.representation.n_atoms}
        if not self.conditional:
            return Denoiser(inner, sigma_data=self.sigma_data, p_mean=self.p_mean, p_std=self.p_std,
                            shift=list(self.shift), **atoms)
        if not self.lag_scales or not self.lag_coefficients:
            raise DataFileError("a transition model description needs lag_coefficients and lag_scales")
        tables = dict(sigma_data=self.sigma_data, mean=list(self.shift),
                      lag_coefficients=[list(c) for c in self.lag_coefficients], lag_scales=list(self.lag_scales),
                      p_mean=self.p_mean, p_std=self.p_std, **atoms)
        if self.representation.orientation_marginal:
            tables["superpose_condition"] = True
        if self.prior is None:
            return TransitionDenoiser(inner, **tables)
        if self.lambda_hat is None:
            raise DataFileError("a BoPITO model description needs lambda_hat")
        return BoPITODenoiser(inner, self.prior.build(), self.lambda_hat, dynamic_part=self.dynamic_part, **tables)

    def noise_range(self, lags: Sequence[float] | None = None) -> tuple[float, float]:
        """(smallest, largest) data scale a sampling schedule must cover for jumps of these lags."""
        if not self.lag_scales:
            return self.sigma_data, self.sigma_data
        if lags is None:
            return min(self.lag_scales), max(self.lag_scales)
        index = np.clip(np.rint(np.asarray(lags, dtype=float)).astype(int), 1, len(self.lag_scales)) - 1
        scales = np.asarray(self.lag_scales)[index]
        return float(scales.min()), float(scales.max())

    # -- model files (format version 1) ----------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The description as written in model files (flat network keys, ``prior``/``molecule`` entries)."""
        d = {"dim": self.dim, "conditional": self.conditional, "hidden": self.network.hidden,
             "n_blocks": self.network.depth, "n_frequencies": self.network.n_frequencies,
             "sigma_data": self.sigma_data, "shift": list(self.shift), "condition_shift": list(self.condition_shift),
             "condition_scale": list(self.condition_scale), "max_log_lag": self.max_log_lag, "p_mean": self.p_mean,
             "p_std": self.p_std,
             "lag_coefficients": None if self.lag_coefficients is None else [list(c) for c in self.lag_coefficients],
             "lag_scales": None if self.lag_scales is None else list(self.lag_scales),
             "prior": None if self.prior is None else self.prior.to_dict(), "lambda_hat": self.lambda_hat,
             "molecule": self.representation.to_dict()}
        if self.dynamic_part != "residual":  # absent from model files written before the choice existed
            d["dynamic_part"] = self.dynamic_part
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], system: "SystemSpec | None" = None) -> "DenoiserSpec":
        """Read :meth:`to_dict`'s form (one-line :class:`~itomd.errors.DataFileError` if incomplete);
        ``system``: the model's, whose forces a force-field prior uses."""
        required = ("dim", "conditional", "hidden", "n_blocks", "n_frequencies", "sigma_data", "shift",
                    "condition_shift", "condition_scale", "max_log_lag", "p_mean", "p_std")
        missing = [k for k in required if k not in d]
        if missing:
            raise DataFileError(f"model description lacks {', '.join(sorted(missing))}")
        dim = int(d["dim"])
        return cls(dim=dim, conditional=bool(d["conditional"]),
                   network=NetworkSize(int(d["hidden"]), int(d["n_blocks"]), int(d["n_frequencies"])),
                   sigma_data=float(d["sigma_data"]), shift=_floats(d["shift"]),
                   condition_shift=_floats(d["condition_shift"]), condition_scale=_floats(d["condition_scale"]),
                   max_log_lag=float(d["max_log_lag"]), p_mean=float(d["p_mean"]), p_std=float(d["p_std"]),
                   representation=Representation.from_dict(d.get("molecule"), dim),
                   lag_coefficients=None if d.get("lag_coefficients") is None
                   else tuple(_floats(c) for c in d["lag_coefficients"]),
                   lag_scales=None if d.get("lag_scales") is None else _floats(d["lag_scales"]),
                   prior=None if d.get("prior") is None else prior_from_dict(d["prior"], system),
                   lambda_hat=None if d.get("lambda_hat") is None else float(d["lambda_hat"]),
                   dynamic_part=_dynamic_part(d))


def _dynamic_part(d: dict[str, Any]) -> str:
    """A model description's BoPITO dynamic part (files of the boolean ``linear_dynamic_part``: "linear")."""
    value = d.get("dynamic_part", "linear" if d.get("linear_dynamic_part") else "residual")
    try:
        return check_dynamic_part(value)
    except InvalidInputError as exc:
        raise DataFileError(f"model description: {exc}") from None


def _floats(values: Sequence[Any]) -> tuple[float, ...]:
    return tuple(float(v) for v in values)


__all__ = ["DenoiserSpec", "ExactPrior", "ForceFieldPrior", "LearnedPrior", "Prior", "prior_from_dict",
           "MAX_EXACT_PRIOR_DIM"]
