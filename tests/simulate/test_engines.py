"""Engines: the one interface over torch Langevin and OpenMM dynamics — physics, seeds, campaign data, errors."""

import math
import pickle

import numpy as np
import pytest
import torch

from itomd.errors import InvalidInputError
from itomd.simulate.campaign import Campaign, run_campaign
from itomd.simulate.engines import ENGINES, Engine, LangevinEngine, OpenMMEngine, make_engine
from itomd.simulate.integrators import INTEGRATORS
from itomd.simulate.molecular import MOLECULAR_INTEGRATOR
from itomd.systems import System, SystemSpec, resolve_system


def test_defaults_and_parameters_come_from_the_system():
    toy = resolve_system("double-well")
    engine = make_engine(toy)
    assert isinstance(engine, LangevinEngine) and engine.batched
    assert engine.parameters() == {"integrator": "overdamped"}
    assert make_engine(toy, "baoab").parameters() == {"integrator": "baoab"}
    assert set(System.integrators) <= set(INTEGRATORS) and set(ENGINES) == {*INTEGRATORS, MOLECULAR_INTEGRATOR}


def test_overdamped_engine_relaxes_like_the_ornstein_uhlenbeck_process():
    # U = x²/2, kT = γ = 1: from x0 = 2, x_t ~ N(2 e^{-t}, 1 - e^{-2t}); 4000 walkers, 5 standard errors
    system = resolve_system("harmonic")
    frames = make_engine(system).run(np.full((4000, 1), 2.0), n_frames=51, seed=3)
    assert frames.shape == (4000, 51, 1) and frames.dtype == np.float64
    assert np.all(frames[:, 0] == 2.0)
    t = 50 * system.frame_interval
    mean, variance = 2.0 * math.exp(-t), 1.0 - math.exp(-2.0 * t)
    x = frames[:, -1, 0]
    assert x.mean() == pytest.approx(mean, abs=5 * math.sqrt(variance / 4000))
    assert x.var() == pytest.approx(variance, abs=5 * variance * math.sqrt(2 / 4000))


def test_baoab_engine_keeps_the_boltzmann_distribution():
    system = resolve_system("harmonic")
    x0 = np.random.default_rng(0).normal(size=(4000, 1))  # the exact equilibrium, N(0, kT/k)
    x = make_engine(system, "baoab").run(x0, n_frames=41, seed=5)[:, -1, 0]
    assert x.mean() == pytest.approx(0.0, abs=5 / math.sqrt(4000))
    assert x.var() == pytest.approx(1.0, abs=5 * math.sqrt(2 / 4000))


def test_same_seed_same_frames_other_seed_other_frames_threads_restored():
    engine = make_engine(resolve_system("double-well"), "baoab")
    x0 = np.linspace(-1.0, 1.0, 6)[:, None]
    torch.set_num_threads(2)
    try:
        a = engine.run(x0, 15, seed=11)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)
    assert np.array_equal(a, engine.run(x0, 15, seed=11))
    assert not np.array_equal(a, engine.run(x0, 15, seed=12))
    assert not np.array_equal(a[0, 1:], a[1, 1:])


def test_engine_run_with_the_chunk_seed_reproduces_the_campaign_files(tmp_path):
    spec = SystemSpec("double-well")
    store = run_campaign(spec, tmp_path, n_trajectories=5, n_frames=12, seed=4, chunk_size=2, integrator="baoab",
                         n_workers=0, progress=False)
    campaign = Campaign(spec, n_trajectories=5, n_frames=12, seed=4, chunk_size=2, integrator="baoab")
    engine = make_engine(spec.build(), **campaign.engine.parameters())
    for chunk in range(campaign.n_chunks):
        frames = engine.run(campaign.start_points(chunk), 12, campaign.chunk_torch_seed(chunk))
        for offset, index in enumerate(campaign.chunk_trajectories(chunk)):
            assert np.array_equal(frames[offset], store.read(index))
            assert store.read_metadata(index)["chunk_torch_seed"] == campaign.chunk_torch_seed(chunk)


def test_engines_pickle_and_rebuild_from_their_parameters():
    engine = make_engine(resolve_system("prinz"), "baoab")
    clone = pickle.loads(pickle.dumps(engine))
    rebuilt = make_engine(resolve_system("prinz"), **engine.parameters())
    x0 = np.zeros((3, 1))
    reference = engine.run(x0, 5, seed=1)
    assert np.array_equal(reference, clone.run(x0, 5, seed=1))
    assert np.array_equal(reference, rebuilt.run(x0, 5, seed=1))
    assert "baoab" in repr(engine)


@pytest.mark.parametrize("spec, integrator, platform, fragment", [
    ("prinz", "verlet", None, "unknown integrator 'verlet': choose one of overdamped, baoab, langevin-middle"),
    ("ala2", "baoab", None, "'ala2' is a molecule, simulated by OpenMM with integrator 'langevin-middle', not 'baoab'"),
    ("prinz", "langevin-middle", None, "integrator 'langevin-middle' (OpenMM) is for molecules; choose one of "
                                       "overdamped, baoab for 'prinz'"),
    ("prinz", None, "Reference", "an OpenMM platform applies to molecules only, not to 'prinz'"),
    ("ala2", None, "Metal", "unknown OpenMM platform 'Metal': choose one of Reference, CPU, CUDA, OpenCL"),
])
def test_wrong_integrator_or_platform_is_a_one_line_error(spec, integrator, platform, fragment):
    with pytest.raises(InvalidInputError) as info:
        make_engine(resolve_system(spec), integrator, platform)
    assert str(info.value) == fragment


def test_a_system_that_restricts_its_integrators_is_told_what_to_choose():
    class OnlyBAOAB(System):
        integrators = ("baoab",)

    system = OnlyBAOAB(resolve_system("harmonic").potential, kT=1.0, name="stiff")
    assert make_engine(system).integrator == "baoab"
    with pytest.raises(InvalidInputError, match="integrator 'overdamped' does not apply to 'stiff': choose one of baoab"):
        make_engine(system, "overdamped")


# -- OpenMM ---------------------------------------------------------------------------------------
def test_openmm_engine_defaults_and_campaign_files(tmp_path):
    spec = SystemSpec("ala2", frame_interval=0.05)
    system = spec.build()
    engine = make_engine(system)
    assert isinstance(engine, OpenMMEngine) and not engine.batched
    assert engine.parameters() == {"integrator": "langevin-middle", "platform": "Reference"}
    store = run_campaign(spec, tmp_path, n_trajectories=3, n_frames=4, seed=2, chunk_size=2, n_workers=0,
                         progress=False)
    campaign = Campaign(spec, n_trajectories=3, n_frames=4, seed=2, chunk_size=2)
    for chunk in range(campaign.n_chunks):
        frames = engine.run(campaign.start_points(chunk), 4, campaign.chunk_torch_seed(chunk))
        assert frames.shape == (len(campaign.chunk_trajectories(chunk)), 4, 66)
        for offset, index in enumerate(campaign.chunk_trajectories(chunk)):
            assert np.array_equal(frames[offset], store.read(index))
    assert pickle.loads(pickle.dumps(engine)).parameters() == engine.parameters()


def test_openmm_engine_check_names_the_available_platforms():
    from itomd.simulate.molecular import available_platforms

    missing = next((p for p in ("CUDA", "OpenCL") if p not in available_platforms()), None)
    if missing is None:
        pytest.skip("every platform is available here")
    engine = make_engine(resolve_system("ala2"), platform=missing)  # known name: accepted until checked
    with pytest.raises(InvalidInputError, match=f"'{missing}' is not available here") as info:
        engine.check()
    assert "\n" not in str(info.value)


def test_engine_is_the_abstract_interface():
    with pytest.raises(TypeError):
        Engine(resolve_system("prinz"), "overdamped")  # run() is abstract


def test_simulation_does_not_depend_on_models():
    import ast
    from pathlib import Path

    import itomd.simulate

    for path in sorted(Path(itomd.simulate.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith(("itomd.model", "itomd.rollout")), f"{path.name}: {node.module}"
