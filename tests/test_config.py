"""Every config group option composes; bad values stop at the schema with one clear line."""

from __future__ import annotations

import pytest
from hydra.errors import ConfigCompositionException
from hydra.utils import get_object
from omegaconf import OmegaConf
from omegaconf.errors import ValidationError

from trainlab.config.checkpoint import job_key
from trainlab.config.checks import check_config, config_from_record
from trainlab.config.schema import SCHEMAS, TrainConfig, as_plain_dict, job_identity
from trainlab.errors import ConfigError
from trainlab.paths import CONFIG_DIR, EXPERIMENTS_DIR

GROUPS = ["data", "model", "loss", "optimizer", "scheduler", "device", "engine", "tracking"]


def options(group: str) -> list[str]:
    """The option files and the schemas that are options without one (`model=custom`)."""
    files = {p.stem for p in (CONFIG_DIR / group).glob("*.yaml")}
    return sorted(files | {name for name in SCHEMAS[group] if name != group})


# What an option needs besides its defaults to be a complete config.
REQUIRED = {
    ("data", "csv"): ["data.path=/tmp/x.csv", "data.target=y"],
    ("data", "parquet"): ["data.path=/tmp/x.parquet", "data.target=y"],
    ("data", "images"): ["data.path=/tmp/photos"],
    ("model", "custom"): ["model.target=torch.nn.Linear"],
    ("data", "custom"): ["data.target=tests.user_data.Regression"],
}


@pytest.mark.parametrize(
    "group,option", [(g, o) for g in GROUPS for o in options(g)], ids=lambda v: str(v)
)
def test_every_group_option_composes_and_validates(composed, group, option):
    cfg = composed(f"{group}={option}", *REQUIRED.get((group, option), []))
    settings = check_config(cfg)
    assert isinstance(settings, TrainConfig)
    node = getattr(settings, group)
    schemas = SCHEMAS[group]
    assert type(node) is schemas.get(option, next(iter(schemas.values())))
    # What is recorded (resolved.yaml, params, the job key) is OmegaConf's plain form, exactly.
    expected = OmegaConf.to_container(OmegaConf.structured(settings), resolve=True)
    assert repr(as_plain_dict(settings)) == repr(expected)  # the same types too (1 vs 1.0)


@pytest.mark.parametrize("name", sorted(p.stem for p in EXPERIMENTS_DIR.glob("*.yaml")))
def test_every_experiment_composes(composed, name):
    settings = check_config(composed(f"experiment={name}"))
    assert settings.experiment_name  # presets name their MLflow experiment
    expected = OmegaConf.to_container(OmegaConf.structured(settings), resolve=True)
    assert repr(as_plain_dict(settings)) == repr(expected)  # the same types too (1 vs 1.0)


def test_seed_pipeline_is_note_20(composed):
    s = check_config(composed("experiment=seed_pipeline"))
    assert (s.data.x, s.data.y, s.x_test) == ([1, 2, 3, 4], [2, 4, 6, 8], [5.0])
    assert (s.optimizer.lr, s.max_epochs, s.model.bias) == (0.01, 100, True)
    assert s.optimizer._target_ == "torch.optim.SGD" and s.loss._target_ == "torch.nn.MSELoss"


def test_command_line_overrides_win_over_experiment(composed):
    s = check_config(composed("experiment=seed_pipeline", "optimizer=adam", "optimizer.lr=0.05"))
    assert s.optimizer._target_ == "torch.optim.Adam" and s.optimizer.lr == 0.05


@pytest.mark.parametrize(
    "override,message",
    [
        ("optimizer.lr=-0.1", "optimizer.lr=-0.1 is not allowed: expected a learning rate > 0"),
        ("optimizer.lr=0", "optimizer.lr=0.0 is not allowed"),
        ("max_epochs=0", "max_epochs=0 is not allowed: expected an integer > 0"),
        ("max_steps=0", "max_steps=0 is not allowed"),
        ("data.val_split=1.5", "data.val_split=1.5 is not allowed: expected 0 <= x < 1"),
        ("data.batch_size=0", "data.batch_size=0 is not allowed"),
        ("device.precision=8", "device.precision='8' is not allowed: expected one of 64, 32"),
        ("model.init=ones", "model.init='ones' is not allowed: expected one of default, zeros"),
        ("loss=huber loss.delta=0", "loss.delta=0.0 is not allowed"),
        ("optimizer=adam optimizer.betas=[0.9,1.5]", "optimizer.betas=[0.9, 1.5] is not allowed"),
        ("optimizer.nesterov=true", "optimizer.nesterov=True is not allowed"),
    ],
)
def test_bad_values_stop_with_one_line(composed, override, message):
    with pytest.raises(ConfigError) as err:
        check_config(composed(*override.split()))
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_key_and_wrong_type_fail_while_composing(composed):
    with pytest.raises(
        ConfigCompositionException, match=r"Could not override 'optimizer\.momentun'"
    ):
        composed("optimizer.momentun=0.9")
    with pytest.raises(ConfigCompositionException) as err:
        composed("max_epochs=many")
    assert isinstance(err.value.__cause__, ValidationError)
    assert "Value 'many' of type 'str' could not be converted to Integer" in str(
        err.value.__cause__
    )


def test_a_renamed_default_of_a_recorded_run_reads_as_today_with_its_job_key(composed):
    """A run recorded before `callbacks.trial` moved to trainlab.callbacks names the old path:
    read again (resume, rerun, fork) it is today's default, so its job key stays the one it was
    recorded with, and the old path still builds the same callback."""
    fresh = check_config(composed("optimizer=adam"))
    recorded = as_plain_dict(fresh)
    old = "trainlab.sweeps.trial_reports.TrialReports.for_run"
    recorded["callbacks"]["trial"]["_target_"] = old
    again = check_config(config_from_record(recorded))
    assert again.callbacks["trial"]["_target_"] == "trainlab.callbacks.TrialReports.for_run"
    key = job_key(job_identity(fresh), None, None)
    assert job_key(job_identity(again), None, None) == key
    assert get_object(old) == get_object(again.callbacks["trial"]["_target_"])
