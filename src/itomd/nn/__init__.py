"""Inner networks wrapped by :class:`~itomd.diffusion.Denoiser`."""

from itomd.nn.mlp import SinusoidalEmbedding, TransitionMLP

__all__ = ["SinusoidalEmbedding", "TransitionMLP"]
