import numpy as np
import pytest

from service.store.codec import RowEncodeError, decode_rows, encode_row


def test_rows_round_trip_with_lists_and_numpy_values() -> None:
    row = {
        "item_id": "i7",
        "price": np.float64(9.5),
        "count": np.int64(3),
        "tags": np.array([1, 2, 3]),
        "history": ["a", "b"],
        "flag": True,
    }
    decoded = decode_rows([encode_row(row)])
    assert decoded.rows == [
        {
            "item_id": "i7",
            "price": 9.5,
            "count": 3,
            "tags": [1, 2, 3],
            "history": ["a", "b"],
            "flag": True,
        }
    ]
    assert (decoded.hits, decoded.corrupt) == (1, 0)


def test_none_values_are_dropped_as_missing() -> None:
    assert decode_rows([encode_row({"a": None, "b": 1})]).rows == [{"b": 1}]


def test_garbage_spoils_only_its_own_entity() -> None:
    good = encode_row({"x": 1})
    decoded = decode_rows([good, b"\x00\xffnot json", None, b"[1, 2]", b'"a string"', good])
    assert decoded.rows == [{"x": 1}, None, None, None, None, {"x": 1}]
    assert (decoded.hits, decoded.corrupt) == (2, 3)


def test_unstorable_value_names_the_problem() -> None:
    with pytest.raises(RowEncodeError, match="cannot encode"):
        encode_row({"obj": object()})
