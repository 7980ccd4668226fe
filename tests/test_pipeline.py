"""The one registry of stages and how it refuses what it does not know."""

import pytest

from lifecycle_recs.names import PIPELINE_STAGES
from lifecycle_recs.pipeline import REGISTRY, run_nightly


def test_one_registry_of_stages_in_pipeline_order():
    assert tuple(REGISTRY) == PIPELINE_STAGES


def test_unknown_stage_is_a_clear_error(spark, make_cfg):
    with pytest.raises(ValueError, match=r"unknown stage\(s\) \['scoring'\]"):
        run_nightly(spark, make_cfg(), "2026-01-01", stages=["scoring"])
