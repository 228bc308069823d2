"""Simulation: batched Langevin integrators and resumable campaigns."""

from itomd.simulate.campaign import Campaign, run_campaign
from itomd.simulate.integrators import BAOABLangevin, OverdampedLangevin, SimulationError, make_integrator, simulate

__all__ = ["simulate", "OverdampedLangevin", "BAOABLangevin", "make_integrator", "SimulationError",
           "Campaign", "run_campaign"]
