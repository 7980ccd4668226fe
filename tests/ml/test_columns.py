"""Arrow decoding of user rows (ml/columns.py): slices, nulls, string kinds."""

import numpy as np
import pandas as pd
import pyarrow as pa

from lifecycle_recs.ml import columns
from lifecycle_recs.ml.features import encode_last
from lifecycle_recs.ml.vocab import UNK, Vocab

VOCAB = Vocab(["a", "b", "c"], ["view", "purchase"], ["x", "y", "x"])


def batch(string_type=pa.string()):  # noqa: B008 (an immutable type)
    return pa.RecordBatch.from_arrays(
        [
            pa.array(["u0", "u1", "u2", "u3"], string_type),
            pa.array([["a", "b"], None, ["c", None, "zz"], []], pa.list_(string_type)),
            pa.array(
                [["view", "purchase"], None, ["view", "nope", None], []], pa.list_(string_type)
            ),
            pa.array([[1.0, None], None, [2.0, 3.0, 4.0], []], pa.list_(pa.float64())),
            pa.array([5, None, 7, 0], pa.int64()),
        ],
        ["user_id", "item_ids", "event_types", "time_gaps_hours", "n_events"],
    )


def test_lists_decode_to_flat_values_and_offsets_with_nulls_as_empty():
    cols = columns.from_record_batch(batch())
    assert cols.n == 4 and list(cols.lengths) == [2, 0, 3, 0]
    assert cols.items.to_pylist() == ["a", "b", "c", None, "zz"]
    assert list(columns.index_in(cols.items, VOCAB.arrow_ids())) == [2, 3, 4, UNK, UNK]
    assert np.isnan(cols.numeric["n_events"][1]) and cols.numeric["n_events"][2] == 7
    gaps = cols.flat_float("time_gaps_hours")
    assert np.isnan(gaps[1]) and list(gaps[[0, 2, 3, 4]]) == [1.0, 2.0, 3.0, 4.0]


def test_a_sliced_batch_and_large_strings_decode_like_the_rows_they_hold():
    whole = encode_last(columns.from_record_batch(batch()), VOCAB, 4)
    for rb in (batch().slice(2, 2), batch(pa.large_string()).slice(2, 2)):
        part = encode_last(columns.from_record_batch(rb), VOCAB, 4)
        for k in ("items", "events", "gaps", "length"):
            assert np.array_equal(part[k], whole[k][2:]), k
    assert list(whole["events"][2][:3]) == [2, UNK, UNK]


def test_pandas_and_arrow_inputs_encode_alike():
    pdf = batch().to_pandas()
    a, b = encode_last(pdf, VOCAB, 3), encode_last(columns.from_record_batch(batch()), VOCAB, 3)
    for k in a:
        assert np.array_equal(a[k], b[k]), k
    assert isinstance(pdf, pd.DataFrame)


def test_output_lists_from_flat_values():
    arr = columns.list_array(pa.array(["p", "q", "r"]), columns.offsets_of(np.array([2, 0, 1])))
    assert arr.to_pylist() == [["p", "q"], [], ["r"]]
    assert columns.fixed_lists(
        np.arange(6, dtype=np.float64).reshape(3, 2), pa.float64()
    ).to_pylist() == [[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]]
