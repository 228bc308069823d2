"""Data: the trajectory store (one HDF5 file per trajectory, atomic writes, a JSON manifest)."""

from itomd.data.store import TrajectoryStore, save_trajectories, trajectory_filename

__all__ = ["TrajectoryStore", "save_trajectories", "trajectory_filename"]
