import pytest

from lifecycle_recs.config import config_from_dict
from lifecycle_recs.data.sources import read_source


def test_remote_paths_are_not_checked_on_the_local_disk(spark):
    """A dbfs:/ or s3:// path goes to Spark as written (it used to be rejected as missing)."""
    for path in ("dbfs:/mnt/raw/events", "s3a://bucket/events"):
        cfg = config_from_dict(
            {
                "source": {
                    "kind": "generic",
                    "name": "test-src",
                    "format": "parquet",
                    "path": path,
                    "columns": {"user_id": "u", "event_type": "e", "event_ts": "t"},
                }
            }
        )
        with pytest.raises(Exception) as e:
            read_source(spark, cfg)
        assert "source path does not exist" not in str(e.value)


def test_missing_local_path_is_a_clear_error(spark, tmp_path):
    cfg = config_from_dict(
        {
            "source": {
                "kind": "generic",
                "name": "test-src",
                "format": "csv",
                "path": str(tmp_path / "nope"),
                "columns": {"user_id": "u", "event_type": "e", "event_ts": "t"},
            }
        }
    )
    with pytest.raises(FileNotFoundError, match="source path does not exist"):
        read_source(spark, cfg)
