"""Simulation: batched Langevin integrators and resumable campaigns."""

from itomd.simulate.campaign import Campaign, run_campaign
from itomd.simulate.integrators import BAOABLangevin, OverdampedLangevin, SimulationError, make_integrator, simulate
from itomd.simulate.molecular import simulate_molecule, write_topology

__all__ = ["simulate", "OverdampedLangevin", "BAOABLangevin", "make_integrator", "SimulationError",
           "Campaign", "run_campaign", "simulate_molecule", "write_topology"]
