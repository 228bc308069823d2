"""TrainingConfig: one-line validation of every option, TOML files (a [training] table, overrides, unknown
keys), the TOML round trip of a run directory's config.toml, the typed network view and the shipped recipes
(by name, a file of that name winning)."""

from __future__ import annotations

import pytest

from itomd.errors import DataFileError, InvalidInputError
from itomd.training import TrainingConfig
from itomd.training.config import RECIPES, config_source, recipe_names


@pytest.mark.parametrize("changes, message", [
    ({"max_lag": 0}, "max_lag"), ({"lag_distribution": "gaussian"}, "lag_distribution"),
    ({"learning_rate": -1.0}, "learning_rate"), ({"ema_decay": 1.0}, "ema_decay"), ({"minutes": 0}, "minutes"),
    ({"batch_size": 2.5}, "batch_size"), ({"start_balance": 1.5}, "start_balance"),
    ({"start_balance": -0.1}, "start_balance"), ({"start_balance": "yes"}, "start_balance"),
])
def test_config_validation(changes, message):
    with pytest.raises(InvalidInputError, match=message):
        TrainingConfig(**changes)


def test_config_from_toml(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[training]\nmax_lag = 50\nlag_distribution = 'uniform'\nhidden = 64\n")
    config = TrainingConfig.from_toml(path, max_lag=20, minutes=None)
    assert (config.max_lag, config.lag_distribution, config.hidden) == (20, "uniform", 64)
    path.write_text("max_lag = 50\nhiden = 64\n")
    with pytest.raises(InvalidInputError, match="unknown training option.*hiden"):
        TrainingConfig.from_toml(path)
    path.write_text("max_lag = = 5\n")
    with pytest.raises(InvalidInputError, match="not valid TOML"):
        TrainingConfig.from_toml(path)
    with pytest.raises(DataFileError, match="no config file"):
        TrainingConfig.from_toml(tmp_path / "missing.toml")


@pytest.mark.parametrize("changes, message", [
    ({"warmup_steps": -1}, "warmup_steps must be a non-negative integer"), ({"hidden": True}, "hidden"),
    ({"p_std": float("nan")}, "p_std"), ({"grad_clip": -0.1}, "grad_clip"), ({"p_mean": float("inf")}, "p_mean"),
    ({"equilibrium": "yes"}, "equilibrium must be true or false"), ({"prior": ""}, "prior must be"),
    ({"prior": "exact", "lambda_hat": 0.0}, "lambda_hat"),
    ({"prior": "exact", "dynamic_part": "yes"}, "dynamic_part must be one of"),
    ({"dynamic_part": "residual"}, "dynamic_part 'residual' is BoPITO's: it needs a prior"),
    ({"dynamic_part": "transition"}, "dynamic_part 'transition' is BoPITO's: it needs a prior"),
])
def test_more_options_are_validated_in_one_line(changes, message):
    with pytest.raises(InvalidInputError, match=message) as error:
        TrainingConfig(**changes)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("changes", [
    {}, {"max_lag": 7, "lag_distribution": "uniform", "prior": "exact", "lambda_hat": 0.9, "minutes": 1.5,
         "p_mean": -0.5, "learning_rate": 3e-4, "device": "cpu"},
    {"equilibrium": True, "seed": 12, "weight_decay": 0.01, "grad_clip": 0.0},
    {"start_balance": 0.5, "batch_size": 128},
    {"prior": "runs/eq dir/model.pt", "lag_distribution": "fixed", "dynamic_part": "transition"},
])
def test_toml_round_trip(tmp_path, changes):
    config = TrainingConfig(**changes)
    path = tmp_path / "config.toml"
    path.write_text(config.to_toml())
    assert TrainingConfig.from_toml(path) == config
    text = config.to_toml()
    assert ("minutes" in text) == (config.minutes is not None) and ("p_mean" in text) == (config.p_mean is not None)
    assert f"equilibrium = {str(config.equilibrium).lower()}" in text


def test_run_directories_of_the_boolean_linear_part_are_read(tmp_path):
    path = tmp_path / "config.toml"
    for legacy, part in (("true", "linear"), ("false", "residual")):
        path.write_text(f'prior = "exact"\nlinear_dynamic_part = {legacy}\n')
        assert TrainingConfig.from_toml(path).dynamic_part == part
    path.write_text("max_lag = 5\nlinear_dynamic_part = false\n")  # an ITO run of that version recorded it too
    assert TrainingConfig.from_toml(path).dynamic_part is None
    path.write_text('linear_dynamic_part = "yes"\n')
    with pytest.raises(InvalidInputError, match="linear_dynamic_part must be true or false"):
        TrainingConfig.from_toml(path)


def test_overrides_replace_file_values_unless_none(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("max_steps = 10\nhidden = 8\n")
    config = TrainingConfig.from_toml(path, max_steps=None, hidden=16, seed=3)
    assert (config.max_steps, config.hidden, config.seed) == (10, 16, 3)


def test_network_is_the_typed_view_of_the_size_options():
    from itomd.representation import NetworkSize

    config = TrainingConfig(hidden=24, n_blocks=2, n_frequencies=6)
    assert config.network == NetworkSize(24, 2, 6)
    with pytest.raises(InvalidInputError, match="system's default"):
        TrainingConfig().network  # the width is left to the system until training starts


def test_the_system_fills_in_only_what_the_config_leaves_open():
    from itomd.representation import TrainingSize

    size = TrainingSize(batch_size=48, hidden=32, start_balance=0.5)
    config = TrainingConfig().with_system_defaults(size)
    assert (config.batch_size, config.hidden, config.network.n_frequencies, config.start_balance) == (48, 32, 16, 0.5)
    config = TrainingConfig(batch_size=8, hidden=16, start_balance=0.0).with_system_defaults(size)
    assert (config.batch_size, config.hidden, config.start_balance) == (8, 16, 0.0)
    assert "batch_size" not in TrainingConfig().to_toml()  # an open option is not written as a value
    with pytest.raises(InvalidInputError, match="batch_size"):
        TrainingConfig(batch_size=0)


# -- shipped recipes, addressed by name ------------------------------------------------------------
def test_every_shipped_recipe_is_a_valid_config():
    assert {"ala2-ito", "peptide-ito"} <= set(recipe_names())
    for name in recipe_names():
        assert isinstance(TrainingConfig.from_recipe(name), TrainingConfig)


@pytest.mark.parametrize("name", ["ala2-ito", "ala2_ito", "ALA2-ITO"])
def test_recipe_by_name_reads_the_shipped_file(name):
    assert config_source(name) == RECIPES / "ala2_ito.toml"
    config = TrainingConfig.from_recipe(name, minutes=3)
    assert (config.hidden, config.n_blocks, config.batch_size, config.max_steps, config.minutes) == (32, 3, 64, 12000, 3)


def test_the_peptide_recipe_scales_ala2s_by_its_rules():
    """peptide-ito (~52 atoms): batch × n² within 2× of ala2-ito's 64 × 22², the same depth, lags to 200 frames."""
    ala2, peptide = TrainingConfig.from_recipe("ala2-ito"), TrainingConfig.from_recipe("peptide_ito")
    assert config_source("peptide-ito") == RECIPES / "peptide_ito.toml"
    assert 0.5 < peptide.batch_size * 52**2 / (ala2.batch_size * 22**2) < 2 and peptide.batch_size >= 16
    assert peptide.n_blocks == ala2.n_blocks and peptide.max_lag == 2 * ala2.max_lag


def test_an_existing_file_wins_over_a_recipe_of_the_same_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ala2-ito").write_text("hidden = 8\n")
    assert TrainingConfig.from_recipe("ala2-ito").hidden == 8
    assert TrainingConfig.from_recipe(tmp_path / "ala2-ito").hidden == 8


def test_unknown_recipe_lists_the_recipes(tmp_path):
    with pytest.raises(InvalidInputError, match="unknown recipe 'ala3-ito': choose one of ala2-ito"):
        TrainingConfig.from_recipe("ala3-ito")
    with pytest.raises(DataFileError, match="no config file at .*missing.toml .*recipes.*ala2-ito"):
        TrainingConfig.from_recipe(tmp_path / "missing.toml")
