"""itomd — accelerate molecular dynamics with learned transition densities (ITO / BoPITO).

Subpackages and modules
-----------------------
systems
    Potentials, :class:`~itomd.systems.System`, shipped toy systems and exact references.
simulate
    Batched Langevin integrators and resumable dask campaigns.
data
    The trajectory store (HDF5, atomic writes).
diffusion
    Noise schedules, the samplers (:data:`~itomd.diffusion.SAMPLERS`), the EDM denoiser, BoPITO.
nn
    The inner networks: :class:`~itomd.nn.TransitionMLP` (points) and
    :class:`~itomd.nn.equivariant.EquivariantTransitionNet` (molecules).
representation
    What differs between points and molecules for models and analyses.
models
    Typed denoiser descriptions (:class:`~itomd.models.DenoiserSpec`, BoPITO's priors) and
    :class:`~itomd.models.TransitionModel` (a trained model: sampling, files).
training
    :class:`~itomd.training.ITOEstimator` and its :class:`~itomd.training.TrainingConfig`.
rollout, interpolation
    Chained jumps of a model; correlation functions and BoPITO's λ_int.
analysis
    MSMs, implied timescales, CK tests, free energies, JS divergence, autocorrelation, HTML report.

``import itomd`` stays light (no torch, OpenMM or mdtraj); the names below are imported from their
modules on first access: ``TransitionModel``, ``DEFAULT_SAMPLER``, ``ITOEstimator``,
``TrainingConfig``, ``TransitionMLP``, ``EquivariantTransitionNet``. ``__version__`` is the installed
distribution's version (``itomd --version`` prints it); ``0.0.0+unknown`` for a source tree that was
never installed.
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("itomd")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

#: Public names imported on first access (module :func:`__getattr__`), each from its module.
_LAZY = {
    "TransitionModel": "itomd.models",
    "DEFAULT_SAMPLER": "itomd.diffusion.samplers",
    "ITOEstimator": "itomd.training",
    "TrainingConfig": "itomd.training",
    "TransitionMLP": "itomd.nn",
    "EquivariantTransitionNet": "itomd.nn.equivariant",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'itomd' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # later accesses skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
