"""The ingest state of a source: one folder per source under the lakehouse, written whole."""

from lifecycle_recs.config import config_from_dict
from lifecycle_recs.io import checkpoints


def test_the_state_round_trips_in_one_folder_per_source(tmp_path):
    cfg = config_from_dict(
        {"lakehouse": str(tmp_path), "source": {"kind": "generic", "name": "web/ev"}}
    )
    assert checkpoints.load_state(cfg) is None
    checkpoints.save_state(cfg, {"fingerprint": "abc", "settings": {"source.timezone": "UTC"}})
    assert checkpoints.load_state(cfg)["settings"] == {"source.timezone": "UTC"}
    folder = tmp_path / "_checkpoints" / "ingest" / "web_ev"
    assert sorted(p.name for p in folder.iterdir()) == ["state.json"]  # no temporary file left
    assert checkpoints.stream_location(cfg) == str(folder / "stream")
    other = config_from_dict(
        {"lakehouse": str(tmp_path), "source": {"kind": "generic", "name": "b"}}
    )
    assert checkpoints.load_state(other) is None
