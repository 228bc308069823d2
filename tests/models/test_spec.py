"""Typed denoiser descriptions and BoPITO priors: the model-file dicts round-trip exactly, incomplete
ones are refused in one line, and exact priors exist only for low-dimensional systems."""

from __future__ import annotations

import json
import math

import pytest
import torch

from itomd.diffusion.bopito import BoPITODenoiser
from itomd.diffusion.denoiser import Denoiser, TransitionDenoiser
from itomd.diffusion.equilibrium import ExactEquilibriumDenoiser
from itomd.errors import DataFileError, InvalidInputError
from itomd.models import DenoiserSpec, ExactPrior, LearnedPrior, TransitionModel, prior_from_dict
from itomd.nn.equivariant import MoleculeGraph
from itomd.representation import CoordinateRepresentation, MolecularRepresentation, NetworkSize
from itomd.systems import SystemSpec

#: The keys of a model description, in the order files have always had them (format version 1).
FILE_KEYS = ["dim", "conditional", "hidden", "n_blocks", "n_frequencies", "sigma_data", "shift", "condition_shift",
             "condition_scale", "max_log_lag", "p_mean", "p_std", "lag_coefficients", "lag_scales", "prior",
             "lambda_hat", "molecule"]
CHAIN = MoleculeGraph(atom_types=(0, 0, 2, 1),
                      graph_distance=((0, 1, 2, 3), (1, 0, 1, 2), (2, 1, 0, 1), (3, 2, 1, 0)),
                      type_names=("X:C", "X:H", "X:O"))


def _equilibrium(dim: int = 2) -> DenoiserSpec:
    return DenoiserSpec(dim=dim, conditional=False, network=NetworkSize(8, 1, 3), sigma_data=0.7,
                        shift=(0.25,) * dim, condition_shift=(0.25,) * dim, condition_scale=(0.6,) * dim,
                        max_log_lag=math.log(5), p_mean=-1.2 + math.log(0.7 / 0.5), p_std=1.2,
                        representation=CoordinateRepresentation(dim))


def _ito(dim: int = 2, **changes) -> DenoiserSpec:
    base = dict(dim=dim, conditional=True, network=NetworkSize(16, 2, 4), sigma_data=0.9,
                shift=tuple(0.1 * (i + 1) for i in range(dim)), condition_shift=tuple(0.1 * (i + 1) for i in range(dim)),
                condition_scale=tuple(0.5 + 0.1 * i for i in range(dim)), max_log_lag=math.log(5),
                p_mean=-1.2 + math.log(2.0), p_std=1.2, representation=CoordinateRepresentation(dim),
                lag_coefficients=tuple(tuple(0.9**n for _ in range(dim)) for n in range(1, 6)),
                lag_scales=(0.1, 0.15, 0.2, 0.22, 0.25))
    return DenoiserSpec(**{**base, **changes})


def _bopito_exact() -> DenoiserSpec:
    return _ito(dim=1, prior=ExactPrior((40,), ((-1.2, 1.2),)), lambda_hat=0.97)


def _bopito_learned() -> DenoiserSpec:
    prior = LearnedPrior(_equilibrium(), data_low=(-1.5, -2.0), data_high=(1.5, 2.25))
    return _ito(prior=prior, lambda_hat=0.95)


def _molecular() -> DenoiserSpec:
    return DenoiserSpec(dim=12, conditional=True, network=NetworkSize(8, 1, 4), sigma_data=0.1, shift=(0.0,) * 12,
                        condition_shift=(0.0,) * 12, condition_scale=(0.08,) * 12, max_log_lag=math.log(5),
                        p_mean=-1.2 + math.log(2.0), p_std=1.2,
                        representation=MolecularRepresentation(CHAIN, superpose_targets=True),
                        lag_coefficients=tuple((0.8**n,) * 12 for n in range(1, 6)),
                        lag_scales=(0.01, 0.02, 0.025, 0.03, 0.031))


SPECS = {"ITO": _ito, "BoPITO exact": _bopito_exact, "BoPITO learned": _bopito_learned,
         "equilibrium": _equilibrium, "molecular": _molecular}
DENOISERS = {"ITO": TransitionDenoiser, "BoPITO exact": BoPITODenoiser, "BoPITO learned": BoPITODenoiser,
             "equilibrium": Denoiser, "molecular": TransitionDenoiser}


@pytest.mark.parametrize("kind", SPECS)
def test_spec_round_trips_through_its_file_dict(kind):
    spec = SPECS[kind]()
    d = spec.to_dict()
    assert list(d) == FILE_KEYS
    # plain JSON values only (lists, not tuples), as the files have always held
    assert repr(json.loads(json.dumps(d))) == repr(d)
    again = DenoiserSpec.from_dict(d)
    assert again == spec
    assert repr(again.to_dict()) == repr(d)
    assert (d["hidden"], d["n_blocks"], d["n_frequencies"]) == (spec.network.hidden, spec.network.depth,
                                                                spec.network.n_frequencies)


@pytest.mark.parametrize("kind", SPECS)
def test_spec_from_its_dict_builds_the_same_denoiser(kind):
    spec = SPECS[kind]()
    built = spec.build()
    assert type(built) is DENOISERS[kind]
    again = DenoiserSpec.from_dict(spec.to_dict()).build()
    again.load_state_dict(built.state_dict())  # same parameter names and shapes
    assert again.n_atoms == built.n_atoms


def test_prior_entries_of_the_file_dicts():
    exact = _bopito_exact().to_dict()["prior"]
    assert exact == {"kind": "exact", "shape": [40], "box": [[-1.2, 1.2]]}
    learned = _bopito_learned().to_dict()["prior"]
    assert learned == {"kind": "model", "spec": _equilibrium().to_dict(), "data_low": [-1.5, -2.0],
                       "data_high": [1.5, 2.25]}
    assert isinstance(prior_from_dict(exact), ExactPrior) and prior_from_dict(learned) == _bopito_learned().prior
    # a learned prior without its data range (recorded by older files only optionally)
    bare = {"kind": "model", "spec": _equilibrium().to_dict()}
    assert prior_from_dict(bare).region() is None and prior_from_dict(bare).to_dict() == bare


def test_molecular_and_point_specs_record_their_representation():
    molecular = _molecular().to_dict()["molecule"]
    assert molecular == {**CHAIN.to_dict(), "superpose_targets": True}
    assert _ito().to_dict()["molecule"] is None
    assert DenoiserSpec.from_dict(_ito().to_dict()).representation == CoordinateRepresentation(2)


@pytest.mark.parametrize("missing", [["hidden"], ["p_std", "dim"], ["condition_scale", "shift", "sigma_data"]])
def test_missing_keys_are_named_in_one_line(missing):
    d = _ito().to_dict()
    for key in missing:
        del d[key]
    with pytest.raises(DataFileError) as info:
        DenoiserSpec.from_dict(d)
    message = str(info.value)
    assert "\n" not in message
    named = {name.strip() for name in message.split("lacks", 1)[1].split(",")}
    assert named == set(missing)  # exactly the missing ones


@pytest.mark.parametrize("optional", ["lag_coefficients", "lag_scales", "prior", "lambda_hat", "molecule"])
def test_optional_keys_may_be_absent(optional):
    d = _equilibrium().to_dict()
    del d[optional]
    assert DenoiserSpec.from_dict(d) == _equilibrium()


def test_an_unknown_prior_kind_is_refused_in_one_line():
    d = _bopito_exact().to_dict()
    d["prior"] = {"kind": "magic"}
    with pytest.raises(DataFileError) as info:
        DenoiserSpec.from_dict(d)
    assert "\n" not in str(info.value) and "prior" in str(info.value)


def test_a_transition_spec_without_tables_or_lambda_is_a_data_file_error():
    with pytest.raises(DataFileError, match="lag_coefficients and lag_scales"):
        _ito(lag_scales=None).build()
    with pytest.raises(DataFileError, match="lambda_hat"):
        _ito(dim=1, prior=ExactPrior((40,), ((-1.2, 1.2),))).build()


# -- exact priors -------------------------------------------------------------------------------------
def test_the_exact_prior_of_a_4d_system_is_refused_in_one_line():
    system = SystemSpec("double-well", dim=4).build()
    with pytest.raises(InvalidInputError) as info:
        ExactPrior.of_system(system)
    message = str(info.value)
    assert "\n" not in message
    assert "4 coordinates" in message and "equilibrium" in message


def test_the_exact_prior_of_prinz_is_its_grid_on_its_box():
    prior = ExactPrior.of_system(SystemSpec("prinz").build())
    assert prior.dim == 1 and prior.n_atoms is None and prior.box == ((-1.2, 1.2),)
    assert isinstance(prior.module, ExactEquilibriumDenoiser)
    assert prior.shape == tuple(prior.module.probabilities.shape)
    low, high = prior.region()
    assert low.tolist() == [-1.2] and high.tolist() == [1.2]
    empty = prior.build()  # what a model file's weights are loaded into
    empty.load_state_dict(prior.module.state_dict())
    # a description read back from its dict has no module, but builds the same shape
    again = prior_from_dict(prior.to_dict())
    assert again == prior and again.module is None
    again.build().load_state_dict(prior.module.state_dict())


# -- learned priors -----------------------------------------------------------------------------------
def test_a_learned_prior_is_a_frozen_copy_of_an_equilibrium_model():
    spec = _equilibrium()
    model = TransitionModel(spec, spec.build().state_dict(), frame_interval=0.1, max_lag=5,
                            data_low=[-1.0, -2.0], data_high=[1.0, 2.0])
    prior = LearnedPrior.of_model(model)
    assert prior.spec == spec and prior.dim == 2 and prior.n_atoms is None
    assert prior.data_low == (-1.0, -2.0) and prior.data_high == (1.0, 2.0)
    assert prior.module is not model.denoiser
    for key, value in model.denoiser.state_dict().items():
        assert torch.equal(prior.module.state_dict()[key], value)


def test_a_transition_model_is_not_a_prior():
    spec = _ito()
    model = TransitionModel(spec, spec.build().state_dict(), frame_interval=0.1, max_lag=5,
                            data_low=[-1.0, -2.0], data_high=[1.0, 2.0])
    with pytest.raises(InvalidInputError, match="equilibrium model"):
        LearnedPrior.of_model(model)
