"""Diffusion models: noise schedules, samplers (free functions, one signature), the EDM denoiser, BoPITO."""

from itomd.diffusion.bopito import BoPITODenoiser
from itomd.diffusion.denoiser import Denoiser, TransitionDenoiser, append_dims
from itomd.diffusion.equilibrium import ExactEquilibriumDenoiser
from itomd.diffusion.samplers import SAMPLERS, sample_ancestral, sample_euler, sample_euler_maruyama, sample_heun
from itomd.diffusion.schedules import karras_sigmas

__all__ = ["Denoiser", "TransitionDenoiser", "BoPITODenoiser", "ExactEquilibriumDenoiser", "append_dims",
           "karras_sigmas", "sample_euler", "sample_heun", "sample_euler_maruyama", "sample_ancestral", "SAMPLERS"]
