"""Models: typed denoiser descriptions (:class:`DenoiserSpec`, BoPITO's :class:`ExactPrior`,
:class:`LearnedPrior` and :class:`ForceFieldPrior`, by name :func:`prior_named`), their data scales
(:func:`fit_denoiser_spec`, :func:`lag_statistics`) and trained models (:class:`TransitionModel`, the
model file format)."""

from itomd.models.fitting import fit_denoiser_spec, lag_statistics
from itomd.models.spec import DenoiserSpec, ExactPrior, ForceFieldPrior, LearnedPrior, Prior, prior_from_dict
from itomd.models.priors import prior_named
from itomd.models.transition import (DEFAULT_N_STEPS, DEFAULT_SAMPLER, MODEL_FORMAT, MODEL_FORMAT_VERSION,
                                     TransitionModel)

__all__ = ["DenoiserSpec", "ExactPrior", "ForceFieldPrior", "LearnedPrior", "Prior", "prior_from_dict", "prior_named",
           "fit_denoiser_spec", "lag_statistics", "TransitionModel", "DEFAULT_SAMPLER", "DEFAULT_N_STEPS", "MODEL_FORMAT",
           "MODEL_FORMAT_VERSION"]
