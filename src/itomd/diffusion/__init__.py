"""Diffusion models: noise schedules, samplers (free functions, one signature; :data:`SAMPLERS` maps their
names, :data:`DEFAULT_SAMPLER` is the default), the EDM denoiser, BoPITO."""

from itomd.diffusion.bopito import BoPITODenoiser
from itomd.diffusion.denoiser import Denoiser, TransitionDenoiser, append_dims
from itomd.diffusion.equilibrium import ExactEquilibriumDenoiser
from itomd.diffusion.samplers import (DEFAULT_SAMPLER, SAMPLERS, sample_ancestral, sample_consistency, sample_dpmpp_2m,
                                      sample_euler, sample_euler_maruyama, sample_heun, sample_heun_churn)
from itomd.diffusion.schedules import karras_sigmas

__all__ = ["Denoiser", "TransitionDenoiser", "BoPITODenoiser", "ExactEquilibriumDenoiser", "append_dims",
           "karras_sigmas", "sample_euler", "sample_heun", "sample_heun_churn", "sample_dpmpp_2m",
           "sample_euler_maruyama", "sample_ancestral", "sample_consistency", "SAMPLERS", "DEFAULT_SAMPLER"]
