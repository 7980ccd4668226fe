"""Artifacts: round trip, immutable once written, LATEST and checksums checked."""

import os

import numpy as np
import pytest
import torch

from lifecycle_recs.ml import artifacts
from lifecycle_recs.ml.features import Batch, encode_users
from lifecycle_recs.ml.trainer import rank_targets
from tests.helpers import users_frame
from tests.ml.test_features import VOCAB
from tests.ml.test_model import model_of


def _save(root, model, promote=True):
    stats = artifacts.ItemStats(np.arange(VOCAB.n_items, dtype=float), np.full(VOCAB.n_items, 0.5))
    return artifacts.save(
        str(root), model, VOCAB, 6, {"x": 1}, stats, "2026-01-01", promote=promote
    )


def test_roundtrip(tmp_path):
    torch.manual_seed(0)
    m = model_of()
    b = Batch.from_frame(encode_users(users_frame(), VOCAB, 6, "loo"))
    r = rank_targets(m, b, torch.device("cpu"))
    d = _save(tmp_path, m)
    art = artifacts.load(str(tmp_path))
    assert art.version == open(tmp_path / "promoted" / "2026-01-01").read() == os.path.basename(d)
    assert art.max_len == 6
    assert art.version.startswith("lstm-2026-01-01-") and art.path == d
    assert art.vocab.item_ids == VOCAB.item_ids and art.metrics == {"x": 1}
    assert np.array_equal(art.item_stats.popularity, np.arange(VOCAB.n_items))
    assert np.array_equal(rank_targets(art.model, b, torch.device("cpu")), r)
    with pytest.raises(FileNotFoundError, match="train stage"):
        artifacts.load(str(tmp_path / "nothing"))


def test_a_saved_artifact_is_never_rewritten(tmp_path):
    torch.manual_seed(0)
    m = model_of()
    d = _save(tmp_path, m)
    mtimes = {f: os.stat(os.path.join(d, f)).st_mtime_ns for f in os.listdir(d)}
    assert _save(tmp_path, m) == d  # the same weights: the same version, left as it is
    assert {f: os.stat(os.path.join(d, f)).st_mtime_ns for f in os.listdir(d)} == mtimes
    assert sorted(os.listdir(d)) == sorted([*artifacts.FILES, "checksums.json"])
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".")]  # no temp left behind


def test_the_same_weights_with_another_configuration_are_a_new_version(tmp_path):
    # a conf change that does not move the weights (the lapsed users' model, the second stage,
    # the item statistics) must land: before, the old directory was kept as it was and scored
    torch.manual_seed(0)
    m = model_of()
    stats = artifacts.ItemStats(np.arange(VOCAB.n_items, dtype=float), np.full(VOCAB.n_items, 0.5))

    def save(extra, item_stats=stats):
        return artifacts.save(
            str(tmp_path), m, VOCAB, 6, {}, item_stats, "2026-01-01", extra, promote=False
        )

    d = save({"lapsed": {"slope": 1.0, "periods": 1}, "inputs_fingerprint": "a"})
    assert (
        save({"lapsed": {"slope": 1.0, "periods": 1}, "inputs_fingerprint": "b"}) == d
    )  # not what scores
    other = save({"lapsed": {"slope": 0.5, "periods": 6}, "inputs_fingerprint": "a"})
    assert other != d and artifacts.load(other).config["lapsed"] == {"slope": 0.5, "periods": 6}
    assert artifacts.load(d).config["lapsed"] == {"slope": 1.0, "periods": 1}
    assert (
        save(
            {"lapsed": {"slope": 1.0, "periods": 1}},
            artifacts.ItemStats(np.zeros(VOCAB.n_items), np.full(VOCAB.n_items, 0.5)),
        )
        != d
    )
    assert save({"lapsed": {"slope": 1.0, "periods": 1}}) == d


def test_a_retrain_to_an_existing_version_still_records_what_it_measured(tmp_path):
    # an artifact saved before train measured the repeat share, then trained again to the same
    # weights: the directory is left as it is, and load still sees the new measurement
    torch.manual_seed(0)
    m = model_of()
    d = _save(tmp_path, m)
    assert "repeat_share" not in artifacts.load(d).config
    stats = artifacts.ItemStats(np.arange(VOCAB.n_items, dtype=float), np.full(VOCAB.n_items, 0.5))
    again = artifacts.save(
        str(tmp_path), m, VOCAB, 6, {"x": 1}, stats, "2026-01-01", measured={"repeat_share": 0.12}
    )
    assert again == d
    assert artifacts.load(d).config["repeat_share"] == 0.12
    assert artifacts.load(str(tmp_path)).config["repeat_share"] == 0.12
    artifacts.check(d)  # the artifact's own files are untouched
    # a new version carries it in its config.json too, so a copied directory keeps it
    torch.manual_seed(1)
    other = artifacts.save(
        str(tmp_path),
        model_of(),
        VOCAB,
        6,
        {},
        stats,
        "2026-01-01",
        promote=False,
        measured={"repeat_share": None},
    )
    with open(os.path.join(other, "config.json")) as fh:
        assert '"repeat_share": null' in fh.read()
    with open(os.path.join(tmp_path, artifacts.MEASURED, os.path.basename(d) + ".json"), "w") as fh:
        fh.write('{"repeat_share": "many"}')
    with pytest.raises(ValueError, match="measured figures must be a mapping of names to numbers"):
        artifacts.load(d)


def test_promote_false_leaves_latest(tmp_path):
    torch.manual_seed(0)
    first = _save(tmp_path, model_of())
    torch.manual_seed(1)
    _save(tmp_path, model_of(), promote=False)
    assert artifacts.resolve(str(tmp_path)) == first


def test_tampered_file_and_bad_latest_are_refused(tmp_path):
    torch.manual_seed(0)
    d = _save(tmp_path, model_of())
    with open(os.path.join(d, "vocab.json"), "a") as fh:
        fh.write(" ")
    with pytest.raises(ValueError, match="do not match checksums"):
        artifacts.load(d)
    (tmp_path / "promoted" / "2026-01-02").write_text("../../etc")
    with pytest.raises(ValueError, match="not a valid artifact version"):
        artifacts.resolve(str(tmp_path))


def test_a_backfill_scores_with_the_model_of_its_own_night(tmp_path):
    """One LATEST for all dates made a backfill of an old date score with a newer model."""
    torch.manual_seed(0)
    old = _save(tmp_path, model_of(), promote=False)
    artifacts.promote_version(str(tmp_path), os.path.basename(old), "2026-01-10")
    torch.manual_seed(1)
    new = _save(tmp_path, model_of(), promote=False)
    artifacts.promote_version(str(tmp_path), os.path.basename(new), "2026-02-10")
    assert artifacts.resolve(str(tmp_path), as_of="2026-01-31") == old
    assert artifacts.resolve(str(tmp_path), as_of="2026-02-10") == new
    assert artifacts.resolve(str(tmp_path)) == new
    with pytest.raises(FileNotFoundError, match="on or before 2026-01-01"):
        artifacts.resolve(str(tmp_path), as_of="2026-01-01")


def test_concurrent_saves_and_promotions_leave_whole_artifacts(tmp_path):
    """Concurrent saves raced on one temp file."""
    import threading

    torch.manual_seed(0)
    models = [model_of() for _ in range(2)]
    barrier, errors = threading.Barrier(4), []

    def work(i):
        try:
            barrier.wait()
            d = _save(tmp_path, models[i % 2], promote=False)
            artifacts.promote_version(str(tmp_path), os.path.basename(d), f"2026-03-0{1 + i % 2}")
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors
    for night in ("2026-03-01", "2026-03-02"):
        artifacts.load(artifacts.resolve(str(tmp_path), as_of=night))  # whole, checksums match
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".")]
