"""Training: :class:`ITOEstimator` (fit / partial_fit / fetch_model), its :class:`TrainingConfig`, the loop
(:mod:`itomd.training.loop`: one global batch per step, EMA, learning rate, DDP) and the run directory
(:mod:`itomd.training.run`: checkpoints, model, metrics, exact resume)."""

from itomd.training.config import TrainingConfig
from itomd.training.estimator import MIN_DYNAMIC_WEIGHT, ITOEstimator, estimated_lambda_hat
from itomd.training.loop import ExponentialMovingAverage
from itomd.training.run import RunDirectory

__all__ = ["ITOEstimator", "TrainingConfig", "ExponentialMovingAverage", "RunDirectory", "estimated_lambda_hat",
           "MIN_DYNAMIC_WEIGHT"]
