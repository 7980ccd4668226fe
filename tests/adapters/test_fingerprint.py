"""Training-input fingerprints: a rerun reuses an artifact only when what it was
trained from is unchanged (rows, configuration that shapes it, code)."""

import dataclasses
import json
import logging
import os

import numpy as np
import pytest
from pyspark.sql import types as T

from lifecycle_recs.adapters import fingerprint
from lifecycle_recs.config import Config
from lifecycle_recs.ml import artifacts
from lifecycle_recs.ml.vocab import Vocab
from lifecycle_recs.stages.train import reusable
from tests.helpers import make_artifact

SCHEMA = T.StructType(
    [
        T.StructField("user_id", T.StringType()),
        T.StructField("a", T.StringType()),
        T.StructField("b", T.StringType()),
        T.StructField("x", T.DoubleType()),
        T.StructField("gaps", T.ArrayType(T.DoubleType())),
    ]
)
ROWS = [
    ("u1", "p", None, 1.5, [0.0, 2.25]),
    ("u2", None, "q", 3.0, []),
    ("u3", "r", "s", -2.0, None),
]


def digest(spark, rows, partitions=1):
    return fingerprint.frame_digest(spark.createDataFrame(rows, SCHEMA).repartition(partitions))


def test_the_digest_is_of_the_rows_not_their_order(spark):
    base = digest(spark, ROWS)
    assert digest(spark, list(reversed(ROWS)), partitions=3) == base
    # a sum merged in another order differs in its last bits: not a change of the data
    assert digest(spark, [ROWS[0][:3] + (1.5 + 1e-12, [0.0, 2.25 - 1e-13])] + ROWS[1:]) == base


def test_the_digest_changes_with_any_row(spark):
    base = digest(spark, ROWS)
    changed = {
        "a value": [ROWS[0][:3] + (1.6, ROWS[0][4])] + ROWS[1:],
        "an array element": [ROWS[0][:4] + ([0.0, 2.5],)] + ROWS[1:],
        "a null moved to the other column": [ROWS[0], ("u2", "q", None, 3.0, []), ROWS[2]],
        "a row dropped": ROWS[:2],
        "a row duplicated": ROWS + ROWS[:1],
        "an empty array made null": [ROWS[0], ROWS[1][:4] + (None,), ROWS[2]],
    }
    for what, rows in changed.items():
        assert digest(spark, rows) != base, what


def test_the_fingerprint_follows_the_shaping_configuration_only():
    vocab = Vocab(["i1", "i2"], ["view", "purchase"], ["c1", "c2"])
    cfg = Config()

    def fp(c):
        return fingerprint.training_inputs("rows", vocab, None, {"r": 0.25}, c)

    base = fp(cfg)
    assert (
        fp(
            dataclasses.replace(
                cfg, train=dataclasses.replace(cfg.train, epochs=cfg.train.epochs + 1)
            )
        )
        != base
    )
    assert (
        fp(
            dataclasses.replace(
                cfg, model=dataclasses.replace(cfg.model, hidden_dim=cfg.model.hidden_dim * 2)
            )
        )
        != base
    )
    assert fingerprint.training_inputs("other rows", vocab, None, {"r": 0.25}, cfg) != base
    assert fingerprint.training_inputs("rows", vocab, None, {"r": 0.26}, cfg) != base
    # the lapsed users of the periods before T (a correction of old events can leave the rows of T
    # alone)
    counts = (np.array([[4.2, -1.0], [4.5, -1.2]]), np.array([10.0, 3.0]), np.array([9.0, 3.0]))
    with_counts = fingerprint.training_inputs("rows", vocab, None, {"r": 0.25}, cfg, counts)
    assert with_counts != base
    assert fingerprint.training_inputs("rows", vocab, None, {"r": 0.25}, cfg, counts) == with_counts
    assert (
        fingerprint.training_inputs(
            "rows", vocab, None, {"r": 0.25}, cfg, (counts[0], counts[1], np.array([8.0, 3.0]))
        )
        != with_counts
    )
    # where files go and whether promotion is allowed do not shape the model
    for where in (
        {"feed_dir": "/elsewhere"},
        {"max_metric_drop": 0.5},
        {"reuse_same_inputs": False},
    ):
        assert (
            fp(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **where))) == base
        ), where
    assert (
        fp(dataclasses.replace(cfg, lakehouse="/other/lake", artifacts="/other/artifacts")) == base
    )


def test_every_setting_is_either_shaping_or_named_as_not(tmp_path):
    # a new setting is shaping unless someone decides otherwise (NOT_SHAPING)
    assert set(fingerprint.NOT_SHAPING) <= set(fingerprint.SECTIONS)
    shaping = fingerprint.shaping_config(Config())
    for section in fingerprint.SECTIONS:
        names = {f.name for f in dataclasses.fields(getattr(Config(), section))}
        assert set(fingerprint.NOT_SHAPING.get(section, ())) <= names, section
        assert set(shaping[section]) == names - set(fingerprint.NOT_SHAPING.get(section, ())), (
            section
        )
    # what train reads of the evaluation section stays shaping
    assert "btyd_max_rows" in shaping["evaluation"] and "bootstrap" not in shaping["evaluation"]


def test_only_an_intact_artifact_of_the_same_date_and_inputs_is_reused(tmp_path, caplog):
    root = str(tmp_path)
    cfg = Config(artifacts=root)
    d = make_artifact(root)  # trained at 2026-01-01
    version = os.path.basename(d)
    assert reusable(cfg, "2026-01-01", "abc123ef") is None
    # a version saved before (without a fingerprint, or trained again to the same weights) is
    # recorded beside it
    artifacts.record_inputs(root, version, "abc123ef")
    artifacts.record_inputs(root, os.path.basename(make_artifact(root, seed=1)), "fedcba98")
    assert artifacts.trained_from(root, "2026-01-01", "abc123ef") == version
    assert reusable(cfg, "2026-01-01", "abc123ef") == version
    assert reusable(cfg, "2026-01-02", "abc123ef") is None
    assert reusable(cfg, "2026-01-01", "abc123ee") is None
    no_reuse = dataclasses.replace(
        cfg, train=dataclasses.replace(cfg.train, reuse_same_inputs=False)
    )
    assert reusable(no_reuse, "2026-01-01", "abc123ef") is None
    # the artifact directory itself is never written again
    with open(os.path.join(d, "config.json")) as fh:
        assert "inputs_fingerprint" not in json.load(fh)
    # a damaged artifact is trained again, with a warning that says why
    with open(os.path.join(d, "model.pt"), "ab") as fh:
        fh.write(b"x")
    with caplog.at_level(logging.WARNING, logger="lifecycle_recs.stages.train"):
        assert reusable(cfg, "2026-01-01", "abc123ef") is None
    assert (
        "not intact" in caplog.text and version in caplog.text and "training again" in caplog.text
    )
    # names read from the record are checked like every other pointer
    with open(os.path.join(root, artifacts.INPUTS, "abc123ef"), "w") as fh:
        fh.write("../elsewhere")
    with pytest.raises(ValueError, match="not a valid artifact version"):
        artifacts.trained_from(root, "2026-01-01", "abc123ef")
    assert reusable(cfg, "2026-01-01", "abc123ef") is None


def test_the_code_digest_covers_every_folder_of_the_package():
    """The digest once hashed the folder of its own module: with the module in adapters/,
    a change to the model or a stage would not have retrained."""
    from lifecycle_recs.adapters.fingerprint import package_sources

    sources = set(package_sources())
    assert {
        "ml/model.py",
        "stages/train.py",
        "data/sequences.py",
        "config.py",
        "adapters/fingerprint.py",
    } <= sources
