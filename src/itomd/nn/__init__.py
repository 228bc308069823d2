"""Inner networks wrapped by :class:`~itomd.diffusion.Denoiser`: :class:`TransitionMLP` for points,
:class:`EquivariantTransitionNet` (with its :class:`MoleculeGraph`) for molecules. Every inner network
is called as ``inner(x_in, c_noise, positions=x, cond=x_t, lag=N)``."""

from itomd.nn.equivariant import EquivariantTransitionNet, MoleculeGraph
from itomd.nn.mlp import SinusoidalEmbedding, TransitionMLP

__all__ = ["SinusoidalEmbedding", "TransitionMLP", "EquivariantTransitionNet", "MoleculeGraph"]
