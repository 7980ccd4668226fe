import datetime as dt

import pytest

from lifecycle_recs import dates


def test_day_arithmetic():
    assert dates.add_days("2026-03-01", -1) == "2026-02-28"
    assert dates.training_date("2026-03-31", 30) == "2026-03-01"
    assert dates.iso(dt.datetime(2026, 1, 2, 23, 0)) == "2026-01-02"
    with pytest.raises(
        ValueError, match="snapshot_date must be a date YYYY-MM-DD, got '2026-13-01'"
    ):
        dates.parse_date("2026-13-01", "snapshot_date")


def test_utc_now_is_naive_and_whole_seconds():
    now = dates.utc_now()
    assert now.tzinfo is None and now.microsecond == 0
    assert abs((dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) - now).total_seconds()) < 5
