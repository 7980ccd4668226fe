"""The one registry of stages and how it refuses what it does not know."""

import pytest

from lifecycle_recs.names import PIPELINE_STAGES
from lifecycle_recs.pipeline import REGISTRY, DateBeyondEvents, run_nightly


def test_one_registry_of_stages_in_pipeline_order():
    assert tuple(REGISTRY) == PIPELINE_STAGES


def test_unknown_stage_is_a_clear_error(spark, make_cfg):
    with pytest.raises(ValueError, match=r"unknown stage\(s\) \['scoring'\]"):
        run_nightly(spark, make_cfg(), "2026-01-01", stages=["scoring"])


@pytest.mark.slow
def test_a_date_far_past_the_events_is_refused_before_any_snapshot(spark, make_cfg):
    """A typo such as --date 2099-01-01 wrote empty-handed snapshots and became the
    published date."""
    from lifecycle_recs.io import tables
    from lifecycle_recs.stages.ingest import ingest
    from tests.stages.test_ingest import ROWS, raw_source

    cfg = make_cfg()
    ingest(spark, cfg, raw_source(spark, ROWS))  # events up to 2026-03-03
    with pytest.raises(DateBeyondEvents, match=r"D = 2099-01-01 is \d+ days after .* 2026-03-03"):
        run_nightly(spark, cfg, "2099-01-01", stages=["sequences"])
    assert not tables.exists(spark, cfg, "user_sequences")
    run_nightly(spark, cfg, "2026-03-10", stages=["sequences"])  # a quiet week is fine
    assert tables.snapshots(spark, cfg, "user_sequences") == ["2026-03-10"]


@pytest.mark.parametrize(
    "error, stored",
    [
        (
            FileNotFoundError("[Errno 2] No such file: '/mnt/secret/landing/events/x.csv'"),
            "FileNotFoundError: [Errno 2] No such file: '<path>'",
        ),
        (
            RuntimeError("fetch https://user:tok@host.example/api?key=1 failed\nat line 2"),
            "RuntimeError: fetch <url> failed",
        ),
        (
            ValueError("bad value 3.5 in column amount"),
            "ValueError: bad value 3.5 in column amount",
        ),
        (KeyError(), "KeyError"),
    ],
)
def test_a_failure_is_stored_without_paths_urls_or_its_traceback(error, stored):
    """pipeline_runs is read by other teams: raw exception text exposed paths and URLs."""
    from lifecycle_recs.pipeline import ERROR_CHARS, redact_error

    assert redact_error(error) == stored
    assert len(redact_error(RuntimeError("x" * 5000))) == ERROR_CHARS
