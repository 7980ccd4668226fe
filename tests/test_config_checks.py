"""Table names and paths are told apart; the conf refuses a malformed schema."""

import pytest

from lifecycle_recs.config import config_from_dict
from lifecycle_recs.config_checks import is_table_name


def test_table_names_and_paths_are_told_apart():
    assert (
        is_table_name("main.lifecycle.events")
        and is_table_name("spark_catalog.db.t")
        and is_table_name("db.t")
    )
    assert not any(
        is_table_name(p)
        for p in (
            "/data/lake/events",
            "lakehouse/events",
            "s3://b/events",
            "events",
            "a.b.c.d",
            "main.life-cycle.events",
        )
    )
    with pytest.raises(ValueError, match="'table_schema'"):
        config_from_dict({"table_schema": "main/lifecycle"})
