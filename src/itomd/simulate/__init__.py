"""Simulation: batched Langevin integrators, OpenMM molecular dynamics, engines over both, and
resumable campaigns."""

from itomd.simulate.campaign import Campaign, run_campaign
from itomd.simulate.engines import Engine, LangevinEngine, OpenMMEngine, make_engine
from itomd.simulate.integrators import BAOABLangevin, OverdampedLangevin, SimulationError, make_integrator, simulate
from itomd.simulate.molecular import simulate_molecule

__all__ = ["simulate", "OverdampedLangevin", "BAOABLangevin", "make_integrator", "SimulationError",
           "Campaign", "run_campaign", "simulate_molecule", "Engine", "LangevinEngine", "OpenMMEngine",
           "make_engine"]
