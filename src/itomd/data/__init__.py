"""Data: the trajectory store (one HDF5 file per trajectory, atomic writes, a JSON manifest), the
resumable chunked writer of campaigns and rollouts (:mod:`itomd.data.jobs`), every source of start
points (:mod:`itomd.data.starts`), export to MD formats and multi-lag pair sampling for
transition-density training."""

from itomd.data.jobs import ChunkedJob
from itomd.data.pairs import FixedLag, LagSampler, LogUniformLag, PairSampler, UniformLag, make_lag_sampler
from itomd.data.store import TrajectoryStore, save_trajectories, trajectory_filename

__all__ = ["TrajectoryStore", "save_trajectories", "trajectory_filename", "ChunkedJob", "LagSampler", "FixedLag",
           "UniformLag", "LogUniformLag", "make_lag_sampler", "PairSampler"]
