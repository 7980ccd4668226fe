"""Config: typed, checked at load naming the key, frozen; local.yaml agrees with the defaults."""

import dataclasses

import pytest
import yaml

from lifecycle_recs.config import Config, config_from_dict, load_config
from lifecycle_recs.fs import is_remote_path
from tests.helpers import ROOT


@pytest.mark.parametrize(
    "data, message",
    [
        ({"validation": {"event_types": "view"}}, "'validation.event_types' must be a list"),
        ({"train": {"epochs": "8"}}, "'train.epochs' must be an integer"),
        ({"train": {"epochs": True}}, "'train.epochs' must be an integer"),
        ({"train": {"lr": "fast"}}, "'train.lr' must be a number"),
        ({"recommend": {"filter_seen": "yes"}}, "'recommend.filter_seen' must be bool"),
        ({"model": {"encoder": "rnn"}}, "'model.encoder': 'rnn' is not one of"),
        ({"stages": ["ingest", "scoring"]}, "'stages': 'scoring' is not one of"),
        (
            {"recommend": {"strategies_off": ["personalized"]}},
            "'recommend.strategies_off': 'personalized' is not one of",
        ),
        ({"source": {"kind": "kafka"}}, "'source.kind': 'kafka'"),
        (
            {"model": {"loss_weights": {"churn": "high"}}},
            "'model.loss_weights.churn' must be a number",
        ),
        ({"train": {"epochs": 0}}, "'train.epochs' must be positive"),
        (
            {"source": {"event_type": "order"}},
            "source.event_type 'order' is not in validation.event_types",
        ),
        (
            {"source": {"event_type": "purchase", "columns": {"event_type": "action"}}},
            "a constant type or a column",
        ),
        ({"evaluation": {"bootstrap": 0}}, "'evaluation.bootstrap' must be positive"),
        ({"model": {"lapsed_periods": 0}}, "'model.lapsed_periods' must be positive"),
        ({"trian": {}}, "unknown key(s) ['trian']"),
        ({"train": {"epoch": 3}}, "unknown key(s) ['epoch'] in config section 'train'"),
        (
            {"validation": {"min_event_date": 2020}},
            "'validation.min_event_date' must be a date string",
        ),
        # cross-field checks (item 13)
        (
            {"validation": {"min_event_date": "2030-01-01", "max_event_date": "2020-01-01"}},
            "validation.min_event_date 2030-01-01 must be before validation.max_event_date",
        ),
        (
            {"source": {"event_type_map": {"click": "clik"}}},
            "source.event_type_map maps to ['clik']",
        ),
        # a typo inside a mapping, or in the value types, was ignored: every value read as 0
        (
            {"source": {"columns": {"user_id": "customer", "revenu": "amount"}}},
            "source.columns has unknown key(s) ['revenu']",
        ),
        (
            {"source": {"items_columns": {"item_id": "sku", "titel": "name"}}},
            "source.items_columns has unknown key(s) ['titel']",
        ),
        (
            {"tables": {"event": "main.lc.events"}},
            "tables has unknown key(s) ['event']",
        ),
        (
            {"sequences": {"value_event_types": ["purchse"]}},
            "sequences.value_event_types ['purchse'] are not in validation.event_types",
        ),
        (
            {"lifecycle": {"at_risk_days": 40, "churn_days": 30}},
            "lifecycle.at_risk_days (40) must be below",
        ),
        (
            {"publish": {"max_shrink_fraction": 1.5}},
            "'publish.max_shrink_fraction' must be in [0, 1)",
        ),
        (
            {"validation": {"on_quarantine_excess": "ignore"}},
            "'validation.on_quarantine_excess': 'ignore' is not one of",
        ),
        ({"lifecycle": {"horizon_days": 0}}, "'lifecycle.horizon_days' must be positive"),
        (
            {"recommend": {"keep_seen_repeat_share": 2}},
            "'recommend.keep_seen_repeat_share' must be in [0, 1] or null",
        ),
    ],
)
def test_bad_values_name_the_key(data, message):
    with pytest.raises(ValueError) as e:
        config_from_dict(data)
    assert message in str(e.value)


def test_frozen_and_lists_become_tuples():
    cfg = config_from_dict(
        {"validation": {"event_types": ["view", "purchase"]}, "train": {"lr": 1}}
    )
    assert cfg.validation.event_types == ("view", "purchase") and cfg.train.lr == 1.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.train.epochs = 3
    changed = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=3))
    assert changed.train.epochs == 3 and cfg.train.epochs != 3


def test_local_yaml_agrees_with_the_defaults():
    data = yaml.safe_load((ROOT / "conf" / "local.yaml").read_text())
    default = Config()
    for section, values in data.items():
        if not isinstance(values, dict):
            continue
        for key, value in values.items():
            got = getattr(getattr(default, section), key)
            want = tuple(value) if isinstance(value, list) else value
            assert got == want, (
                f"conf/local.yaml {section}.{key}={value!r} but the default is {got!r}"
            )
    assert tuple(data["stages"]) == default.stages


@pytest.mark.parametrize(
    "name", ["local.yaml", "movielens.yaml", "generic_example.yaml", "prod.yaml", "databricks.yaml"]
)
def test_shipped_confs_load(name):
    cfg = load_config(str(ROOT / "conf" / name))
    assert cfg.name


def test_paths_resolve_against_the_project_root_remote_ones_stay():
    cfg = load_config(str(ROOT / "conf" / "local.yaml"))
    assert cfg.lakehouse == str(ROOT / "lakehouse")
    cfg = config_from_dict(
        {"lakehouse": "dbfs:/lake", "artifacts": "s3://b/a", "source": {"path": "x"}}, base="/tmp"
    )
    assert (
        cfg.lakehouse == "dbfs:/lake"
        and cfg.artifacts == "s3://b/a"
        and cfg.source.path == "/tmp/x"
    )
    assert (
        is_remote_path("dbfs:/x")
        and is_remote_path("abfss://c@a/x")
        and not is_remote_path("/Volumes/c/s/v")
    )


def test_command_line_overrides_are_typed_and_nested():
    from lifecycle_recs.config import parse_overrides

    assert parse_overrides(
        ["train.epochs=3", "table_schema=main.lc", "publish.allow_shrink=true"]
    ) == {"train": {"epochs": 3}, "table_schema": "main.lc", "publish": {"allow_shrink": True}}
    with pytest.raises(ValueError, match="key=value"):
        parse_overrides(["train.epochs"])
