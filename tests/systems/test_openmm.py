"""Molecules through OpenMM: units at the boundary (kT, nm), forces, topology (what the registry makes of
molecule names and overrides: tests/systems/test_registry.py)."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from itomd.systems import resolve_system
from itomd.systems.openmm import MolecularSystem, build_openmm_system, kT_in_kj_per_mol, molecular_system

import openmm


def openmm_energy_kj(molecule_system: MolecularSystem, positions: np.ndarray) -> float:
    """Potential energy in kJ/mol straight from OpenMM (no constraints, Reference platform)."""
    system = build_openmm_system(molecule_system.molecule, molecule_system.solvent, constraints=False)
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(positions.reshape(-1, 3))
    return context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(openmm.unit.kilojoule_per_mole)


@pytest.fixture(scope="module")
def perturbed():
    x = molecular_system("ala2").initial_coordinates()
    return np.stack([x, x + np.random.default_rng(0).normal(0.0, 0.01, x.shape)])


@pytest.mark.parametrize("name, temperature", [("ala2", 300.0), ("ala2-implicit", 300.0), ("ala2", 450.0)])
def test_energy_is_openmm_energy_over_RT(name, temperature, perturbed):
    system = resolve_system(name, temperature=temperature)
    energies = system.potential.energy(torch.as_tensor(perturbed))
    assert energies.shape == (2,) and energies.dtype == torch.float64
    RT = 0.00831446261815324 * temperature
    assert kT_in_kj_per_mol(temperature) == pytest.approx(RT, rel=1e-12)
    expected = [openmm_energy_kj(system, x) / RT for x in perturbed]
    np.testing.assert_allclose(energies.numpy(), expected, rtol=1e-10)


def test_implicit_solvent_changes_the_energy(perturbed):
    vacuum = resolve_system("ala2").potential.energy(torch.as_tensor(perturbed[:1]))
    implicit = resolve_system("ala2-implicit").potential.energy(torch.as_tensor(perturbed[:1]))
    assert abs(float(vacuum - implicit)) > 1.0  # solvation energy: many kT


def test_force_is_minus_gradient_of_energy(perturbed):
    system = resolve_system("ala2")
    x = torch.as_tensor(perturbed[1])
    force = system.potential.force(x[None])[0]
    assert force.shape == (66,)
    h = 1e-5
    for i in (0, 4, 17, 30, 65):  # a few coordinates of different atoms (central differences)
        step = torch.zeros(66, dtype=torch.float64)
        step[i] = h
        up, down = system.potential.energy(torch.stack([x + step, x - step]))
        assert float(force[i]) == pytest.approx(-float(up - down) / (2 * h), rel=1e-4, abs=1e-3)


def test_topology_and_structure():
    system = molecular_system("ala2")
    topology = system.topology()
    assert topology.n_atoms == 22 and topology.n_bonds == 21 and system.n_atoms == 22 and system.dim == 66
    assert [r.name for r in topology.residues] == ["ACE", "ALA", "NME"]
    assert system.initial_coordinates().shape == (66,)
    masses = system.masses()
    assert masses.shape == (22,) and masses.sum() == pytest.approx(144.17, abs=0.05)  # C6H12N2O2 in dalton
    constraints = system.openmm_system().getNumConstraints()
    assert constraints == 12  # bonds to hydrogen


def test_importing_itomd_does_not_import_openmm():
    code = ("import sys, itomd, itomd.cli, itomd.systems, itomd.simulate, itomd.data; "
            "from itomd.systems import SystemSpec; SystemSpec('ala2'); "
            "print('openmm' in sys.modules, 'mdtraj' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_equilibrium_score_and_its_hessian_vector_products(perturbed):
    """s₀ = F/kT, and its vector-Jacobian product (central differences of the forces along the vector)
    is a symmetric, consistent Hessian-vector product of ln μ."""
    system = resolve_system("ala2-implicit")
    x = torch.as_tensor(perturbed[1:], dtype=torch.float64)
    score = system.equilibrium_score(x)
    assert torch.allclose(score, system.potential.force(x) / system.kT)
    generator = torch.Generator().manual_seed(0)
    u, v = (torch.randn(x.shape, generator=generator, dtype=torch.float64) for _ in range(2))

    def jacobian_product(direction):
        xg = x.clone().requires_grad_(True)
        (product,) = torch.autograd.grad(system.equilibrium_score(xg), xg, grad_outputs=direction)
        return product

    ju, jv = jacobian_product(u), jacobian_product(v)
    assert float((u * jv).sum()) == pytest.approx(float((v * ju).sum()), rel=1e-5)  # symmetric
    h = 1e-4  # a ten times larger step agrees
    coarse = (system.equilibrium_score(x + h * v) - system.equilibrium_score(x - h * v)) / (2 * h)
    assert torch.allclose(jv, coarse, rtol=1e-3, atol=1e-2 * float(coarse.abs().max()))
    assert float(jv.abs().max()) > 1e3  # bonds: stiff (a product of zeros would pass the checks above)
