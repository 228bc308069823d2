"""BoPITO's equilibrium part by name, as the command line and training configurations give it:
:func:`prior_named`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from itomd.errors import InvalidInputError
from itomd.models.spec import ExactPrior, ForceFieldPrior, LearnedPrior, Prior
from itomd.models.transition import TransitionModel

if TYPE_CHECKING:  # pragma: no cover
    from itomd.systems.registry import SystemSpec

#: The force-field prior's name; ``forcefield:RUN`` blends it with an equilibrium run instead of a Gaussian.
FORCEFIELD = "forcefield"


def prior_named(name: str, system: "SystemSpec | None", trajectories: Sequence[np.ndarray],
                seed: int = 0) -> Prior:
    """The prior ``name`` stands for.

    Parameters
    ----------
    name : str
        ``exact`` (quadrature on the system's reference grid, dimension ≤ 3), ``forcefield`` (the
        system's own potential blended with the Gaussian of the data across noise levels),
        ``forcefield:RUN`` (blended with the equilibrium model RUN) or RUN, an equilibrium model
        (``itomd train --equilibrium``; a run directory or its ``model.pt``).
    system : SystemSpec, optional
        The data's system (the exact and force-field priors need it).
    trajectories : sequence of np.ndarray, each [n_i, dim]
        The training data (the force-field prior's blend is calibrated on them).
    seed : int
        Seed of the calibration's noise draws.

    Returns
    -------
    ExactPrior, LearnedPrior or ForceFieldPrior
    """
    if name in ("exact", FORCEFIELD) or name.startswith(FORCEFIELD + ":"):
        if system is None:
            raise InvalidInputError(f"the {name.split(':')[0]} prior needs the data's system (record it in the "
                                    "trajectory metadata or pass system= to fit)")
        if name == "exact":
            return ExactPrior.of_system(system.build())
        base = name[len(FORCEFIELD) + 1:] or None
        return ForceFieldPrior.of_data(system, trajectories, None if base is None else _learned(base), seed=seed)
    return _learned(name)


def _learned(path: str) -> LearnedPrior:
    return LearnedPrior.of_model(TransitionModel.load(path))


__all__ = ["prior_named", "FORCEFIELD"]
