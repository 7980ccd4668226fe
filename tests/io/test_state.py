"""The state's fingerprint covers exactly the settings that shape a user_days row."""

from dataclasses import replace

from lifecycle_recs.config import Config
from lifecycle_recs.io import state


def test_the_fingerprint_changes_with_the_settings_that_shape_a_day_row_and_no_other():
    cfg = Config()
    seq = cfg.sequences
    assert state.fingerprint(replace(cfg, sequences=replace(seq, max_length=7))) != (
        state.fingerprint(cfg)
    )
    other_types = replace(seq, value_event_types=("purchase",))
    assert state.fingerprint(replace(cfg, sequences=other_types)) != state.fingerprint(cfg)
    reordered = replace(seq, value_event_types=tuple(reversed(seq.value_event_types)))
    assert state.fingerprint(replace(cfg, sequences=reordered)) == state.fingerprint(cfg)
    horizon = replace(cfg.lifecycle, horizon_days=90)  # lifecycle reads the rows, never shapes them
    assert state.fingerprint(replace(cfg, lifecycle=horizon)) == state.fingerprint(cfg)
