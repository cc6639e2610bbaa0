"""FeatureTransform: every outcome of docs/design.md's table, in strict (serving) and lenient
(training) modes, plus the shapes, dtypes and index ranges the model relies on."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.contracts.feature_spec import FeatureSpec
from service.contracts.transform import FeatureTransform, FeatureValueError

ALL_SIDES = ["user", "item", "context", "training"]
MODES = [pytest.param(True, id="strict"), pytest.param(False, id="lenient")]


def fitted_spec() -> FeatureSpec:
    return FeatureSpec.model_validate(
        {
            "name": "t",
            "features": [
                {"name": "user_age", "side": "user", "kind": "categorical"}
                | {"vocabulary": ["20", "30"], "required": True},
                {"name": "history", "side": "user", "kind": "sequence", "max_length": 3}
                | {"item_feature": "item_id"},
                {"name": "item_id", "side": "item", "kind": "categorical"}
                | {"vocabulary": ["a", "b", "42"]},
                {"name": "item_hash", "side": "item", "kind": "categorical", "encoding": "hash"}
                | {"buckets": 7},
                {"name": "price", "side": "item", "kind": "numeric"}
                | {"stats": {"mean": 1.0, "std": 2.0, "clip_lo": 0.0, "clip_hi": 10.0}},
                {"name": "score", "side": "item", "kind": "numeric", "default": 3.0}
                | {"normalize": "none", "stats": {"mean": 5.0, "std": 1.0}},
                {"name": "hour", "side": "context", "kind": "categorical", "vocabulary": ["1"]},
                {"name": "position", "side": "training", "kind": "categorical"}
                | {"vocabulary": ["0", "1"]},
            ],
        }
    )


def item_arrays(strict: bool, **columns: Any) -> dict[str, np.ndarray]:
    n = len(next(iter(columns.values())))
    transform = FeatureTransform(fitted_spec(), strict=strict)
    return transform.transform_columns(columns, n, ["item"], "candidates.features")


def user_arrays(strict: bool, **columns: Any) -> dict[str, np.ndarray]:
    n = len(next(iter(columns.values())))
    columns.setdefault("user_age", ["20"] * n)
    return FeatureTransform(fitted_spec(), strict=strict).transform_columns(columns, n, ["user"])


def test_outputs_every_group_with_model_dtypes_and_shapes() -> None:
    records = [
        {"user_age": 30, "history": ["a"], "item_id": "b", "price": 3.0, "hour": 1, "position": 0},
        {"user_age": "20", "item_id": "zzz", "item_hash": "x", "score": 5, "hour": 2},
    ]
    arrays = FeatureTransform(fitted_spec(), strict=True).transform_records(records, ALL_SIDES)
    shapes = {k: (v.dtype.name, v.shape) for k, v in arrays.items()}
    assert shapes == {
        "user_cat": ("int64", (2, 1)),
        "user_num": ("float32", (2, 0)),
        "user_seq": ("int64", (2, 1, 3)),
        "item_cat": ("int64", (2, 2)),
        "item_num": ("float32", (2, 2)),
        "context_cat": ("int64", (2, 1)),
        "context_num": ("float32", (2, 0)),
        "train_cat": ("int64", (2, 1)),
        "train_num": ("float32", (2, 0)),
    }
    assert arrays["user_cat"][:, 0].tolist() == [2, 1]
    assert arrays["user_seq"][:, 0].tolist() == [[1, 0, 0], [0, 0, 0]]
    assert arrays["item_cat"][:, 0].tolist() == [2, 0]
    assert arrays["context_cat"][:, 0].tolist() == [1, 0]
    assert arrays["train_cat"][:, 0].tolist() == [1, 0]


def test_only_the_requested_sides_are_transformed() -> None:
    transform = FeatureTransform(fitted_spec(), strict=True)
    arrays = transform.transform_records([{"hour": 1}], ["context"])
    assert sorted(arrays) == ["context_cat", "context_num"]
    # user_age is required, but the user side was not asked for.
    with pytest.raises(ValueError, match="unknown sides \\['shop'\\]"):
        transform.transform_records([{}], ["shop"])


def test_records_and_columns_give_identical_arrays() -> None:
    records = [
        {"user_age": 20, "history": ["b", "a"], "item_id": "a", "price": 4, "item_hash": "q"},
        {"user_age": 30, "item_id": 42, "score": 7.5, "hour": "1", "position": 1},
    ]
    names = {k for r in records for k in r}
    columns = {k: [r.get(k) for r in records] for k in names}
    transform = FeatureTransform(fitted_spec(), strict=True)
    by_rows = transform.transform_records(records, ALL_SIDES)
    by_columns = transform.transform_columns(columns, 2, ALL_SIDES)
    assert by_rows.keys() == by_columns.keys()
    for key, array in by_rows.items():
        np.testing.assert_array_equal(array, by_columns[key])


@pytest.mark.parametrize("strict", MODES)
def test_missing_key_and_none_take_the_defaults(strict: bool) -> None:
    absent = item_arrays(strict, item_id=["a", "b"])
    nones = item_arrays(strict, item_id=[None, "b"], item_hash=[None, None], price=[None, None])
    # price: default null = the fitted mean = 0 after normalisation; score: default 3.0, raw space.
    assert absent["item_num"].tolist() == [[0.0, 3.0], [0.0, 3.0]]
    assert nones["item_num"].tolist() == [[0.0, 3.0], [0.0, 3.0]]
    assert nones["item_cat"].tolist() == [[0, 0], [2, 0]]
    seq = user_arrays(strict, history=[None, ["a"]])["user_seq"]
    assert seq[:, 0].tolist() == [[0, 0, 0], [1, 0, 0]]
    assert user_arrays(strict, user_age=["20"])["user_seq"].tolist() == [[[0, 0, 0]]]


@pytest.mark.parametrize("strict", MODES)
def test_required_feature_missing_is_an_error_in_both_modes(strict: bool) -> None:
    transform = FeatureTransform(fitted_spec(), strict=strict)
    with pytest.raises(FeatureValueError, match="required but missing") as absent:
        transform.transform_records([{"history": []}], ["user"], field_prefix="user.features")
    assert (absent.value.field, absent.value.row) == ("user.features.user_age", 0)
    with pytest.raises(FeatureValueError, match="required but missing") as no_column:
        transform.transform_columns({"history": [[]]}, 1, ["user"], "user.features")
    assert (no_column.value.field, no_column.value.row) == ("user.features.user_age", None)
    with pytest.raises(FeatureValueError) as none:
        transform.transform_columns({"user_age": ["20", None]}, 2, ["user"], "users")
    assert (none.value.field, none.value.row) == ("users.user_age", 1)
    assert "send a value" in none.value.problem


@pytest.mark.parametrize("strict", MODES)
def test_unknown_categorical_values_map_to_zero(strict: bool) -> None:
    arrays = item_arrays(strict, item_id=["nope", "a", "", 7])
    assert arrays["item_cat"][:, 0].tolist() == [0, 1, 0, 0]


@pytest.mark.parametrize("strict", MODES)
@pytest.mark.parametrize(
    "column",
    [
        [42, "42", 42.0],
        np.array([42, 42, 42]),
        np.array([42.0, 42.0, 42.0]),
        np.array(["42", "42", "42"]),
        np.array([np.int64(42), np.float32(42.0), "42"], dtype=object),
    ],
)
def test_ints_strings_and_integral_floats_are_the_same_id(strict: bool, column: Any) -> None:
    arrays = item_arrays(strict, item_id=column, item_hash=column)
    expected_hash = item_arrays(strict, item_hash=["42"])["item_cat"][0, 1]
    assert arrays["item_cat"].tolist() == [[3, expected_hash]] * 3


@pytest.mark.parametrize("strict", MODES)
def test_integer_ids_encode_exactly_as_their_decimal_strings(strict: bool) -> None:
    """Integer ids take a faster path (hashed from their digits); the indices must not move."""
    rng = np.random.default_rng(1)
    ints = [*rng.integers(-(10**12), 10**12, 300).tolist(), 0, 42, -1, 2**63 - 1, -(2**63), 2**64]
    texts = [str(v) for v in ints]
    as_strings = item_arrays(strict, item_id=texts, item_hash=texts)["item_cat"].tolist()
    variants: dict[str, list[Any] | np.ndarray] = {
        "python ints": ints,  # 2**64 is beyond int64: it keeps the decimal string path
        "int64 array": np.array(ints[:-1]),
        "integral floats": [float(v) for v in ints[:-3]],  # floats of the extremes are not exact
        "ints and null": [*ints, None],
    }
    for name, column in variants.items():
        arrays = item_arrays(strict, item_id=column, item_hash=column)["item_cat"].tolist()
        given = min(len(column), len(ints))
        assert arrays[:given] == as_strings[:given], name
        assert arrays[given:] == [[0, 0]] * (len(column) - given), name
    mixed = [ints[0], texts[1], float(ints[2]), None]
    expected = [*as_strings[:3], [0, 0]]
    assert item_arrays(strict, item_id=mixed, item_hash=mixed)["item_cat"].tolist() == expected
    history = user_arrays(strict, history=[ints[:2], [42], texts[:2]])["user_seq"][:, 0, :2]
    assert history[0].tolist() == history[2].tolist()


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_nan_and_inf_numbers_are_rejected_when_strict(value: float) -> None:
    with pytest.raises(FeatureValueError, match="not a finite number") as error:
        item_arrays(True, price=[1.0, value])
    assert (error.value.field, error.value.row) == ("candidates.features.price", 1)
    with pytest.raises(FeatureValueError, match="not a finite number"):
        item_arrays(True, price=np.array([value]))


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_nan_and_inf_numbers_take_the_default_when_lenient(value: float) -> None:
    assert item_arrays(False, price=[value], score=[value])["item_num"].tolist() == [[0.0, 3.0]]
    assert item_arrays(False, score=np.array([value, 6.0]))["item_num"][:, 1].tolist() == [3.0, 6.0]


WRONG_NUMBERS = ["1.5", True, [1.0], {"v": 1}]


@pytest.mark.parametrize("value", WRONG_NUMBERS)
def test_wrong_type_number_is_rejected_when_strict(value: Any) -> None:
    with pytest.raises(FeatureValueError, match="expected a number, got") as error:
        item_arrays(True, score=[2.0, value])
    assert (error.value.field, error.value.row) == ("candidates.features.score", 1)


@pytest.mark.parametrize("value", WRONG_NUMBERS)
def test_wrong_type_number_takes_the_default_when_lenient(value: Any) -> None:
    assert item_arrays(False, score=[2.0, value])["item_num"][:, 1].tolist() == [2.0, 3.0]


def test_string_and_bool_arrays_are_wrong_types_for_numbers() -> None:
    for column in (np.array(["1", "2"]), np.array([True, False])):
        with pytest.raises(FeatureValueError, match="expected a number"):
            item_arrays(True, score=column)
        assert item_arrays(False, score=column)["item_num"][:, 1].tolist() == [3.0, 3.0]


WRONG_IDS = [True, np.bool_(False), 3.5, float("inf"), {"id": "a"}, ["a"]]


@pytest.mark.parametrize("value", WRONG_IDS)
def test_wrong_type_id_is_rejected_when_strict(value: Any) -> None:
    with pytest.raises(FeatureValueError, match="expected a string or integer id") as error:
        item_arrays(True, item_id=["a", value])
    assert (error.value.field, error.value.row) == ("candidates.features.item_id", 1)


@pytest.mark.parametrize("value", WRONG_IDS)
def test_wrong_type_id_maps_to_zero_when_lenient(value: Any) -> None:
    assert item_arrays(False, item_id=["a", value])["item_cat"][:, 0].tolist() == [1, 0]


def test_bool_and_fractional_arrays_are_not_ids() -> None:
    for column in (np.array([True, False]), np.array([1.5, 2.0])):
        with pytest.raises(FeatureValueError, match="expected a string or integer id"):
            item_arrays(True, item_hash=column)
    assert item_arrays(False, item_hash=np.array([True]))["item_cat"].tolist() == [[0, 0]]
    assert item_arrays(False, item_hash=np.array([1.5, 2.0]))["item_cat"][0, 1] == 0


@pytest.mark.parametrize("strict", MODES)
def test_sequence_keeps_the_most_recent_ids_and_pads_on_the_right(strict: bool) -> None:
    history = [["b", "a", "b", "42", "a"], ("a",), [], np.array(["42", "zzz"])]
    seq = user_arrays(strict, history=history)["user_seq"][:, 0]
    assert seq.tolist() == [[2, 3, 1], [1, 0, 0], [0, 0, 0], [3, 0, 0]]
    grid = user_arrays(strict, history=np.array([[1, 2, 42, 42], [42, 42, 42, 42]]))
    assert grid["user_seq"][:, 0].tolist() == [[0, 3, 3], [3, 3, 3]]


@pytest.mark.parametrize("value", ["a b", 5, {"x": 1}, True])
def test_sequence_of_wrong_type_is_rejected_when_strict_and_empty_when_lenient(value: Any) -> None:
    with pytest.raises(FeatureValueError, match="expected a list of item ids") as error:
        user_arrays(True, history=[["a"], value])
    assert (error.value.field, error.value.row) == ("history", 1)
    assert user_arrays(False, history=[["a"], value])["user_seq"][:, 0].tolist() == [
        [1, 0, 0],
        [0, 0, 0],
    ]


def test_sequence_element_of_wrong_type_names_its_position() -> None:
    history = [["a"], ["b", True, "a"]]
    with pytest.raises(FeatureValueError, match="string or integer id, got bool") as error:
        user_arrays(True, history=history)
    assert (error.value.field, error.value.row) == ("history[1]", 1)
    lenient = user_arrays(False, history=history)["user_seq"][:, 0]
    assert lenient.tolist() == [[1, 0, 0], [2, 0, 1]]


@pytest.mark.parametrize("strict", MODES)
def test_pandas_columns_are_accepted(strict: bool) -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(
        {
            "item_id": ["a", None, "42"],
            "item_hash": [1, None, 3],  # becomes float64 with NaN
            "score": [1.0, 2.0, 6.0],
            "user_age": pd.array([20, None, 30], dtype="Int64"),
            "history": [np.array(["a", "b"]), None, ["42", "a", "b", "a"]],
        }
    )
    arrays = item_arrays(
        strict, **{c: frame[c].to_numpy() for c in ("item_id", "item_hash", "score")}
    )
    assert arrays["item_cat"][:, 0].tolist() == [1, 0, 3]
    assert arrays["item_cat"][1, 1] == 0
    assert arrays["item_cat"][0, 1] == item_arrays(strict, item_hash=["1"])["item_cat"][0, 1]
    user = {c: frame[c].to_numpy() for c in ("history",)}
    seq = user_arrays(strict, user_age=["20", "30", "20"], **user)["user_seq"][:, 0]
    assert seq.tolist() == [[1, 2, 0], [0, 0, 0], [1, 2, 1]]
    ages = FeatureTransform(fitted_spec(), strict=False).transform_columns(
        {"user_age": frame["user_age"].to_numpy()[[0, 2]]}, 2, ["user"]
    )
    assert ages["user_cat"][:, 0].tolist() == [1, 2]


@pytest.mark.parametrize("strict", MODES)
def test_pandas_nullable_columns_treat_na_as_missing(strict: bool) -> None:
    pd = pytest.importorskip("pandas")
    ids = pd.Series(["a", None, "42"], dtype="string").to_numpy()
    ints = pd.Series([42, None, 1], dtype="Int64").to_numpy()
    arrays = item_arrays(strict, item_id=ids, item_hash=ints)
    assert arrays["item_cat"][:, 0].tolist() == [1, 0, 3]
    assert arrays["item_cat"][:, 1].tolist()[1] == 0
    assert arrays["item_cat"][0, 1] == item_arrays(strict, item_hash=["42"])["item_cat"][0, 1]


def test_every_index_is_within_its_cardinality() -> None:
    rng = np.random.default_rng(0)
    junk: list[Any] = ["a", "b", "42", 42, 42.0, None, True, 1.5, "", "x" * 50, float("inf"), -7]
    n = 300
    picks = [junk[i] for i in rng.integers(0, len(junk), n)]
    histories = [
        [junk[i] for i in rng.integers(0, len(junk), rng.integers(0, 8))] for _ in range(n)
    ]
    arrays = FeatureTransform(fitted_spec(), strict=False).transform_columns(
        {
            "user_age": [p if p is not None else 1 for p in picks],
            "history": histories,
            "item_id": picks,
            "item_hash": picks,
            "hour": picks,
        },
        n,
        ALL_SIDES,
    )
    spec = fitted_spec()
    for side in ("user", "item", "context"):
        cards = np.array(spec.cardinalities(side), dtype=np.int64)
        cat = arrays[f"{side}_cat"]
        assert ((cat >= 0) & (cat < cards)).all()
    assert arrays["item_cat"][:, 1].max() <= 7
    assert ((arrays["user_seq"] >= 0) & (arrays["user_seq"] < 4)).all()


def test_numbers_are_clipped_log_scaled_and_standardised() -> None:
    spec = FeatureSpec.model_validate(
        {
            "name": "n",
            "features": [
                {"name": "i", "side": "item", "kind": "categorical", "vocabulary": []},
                {"name": "x", "side": "item", "kind": "numeric", "log1p": True}
                | {"stats": {"mean": 1.0, "std": 0.5, "clip_lo": 0.0, "clip_hi": 99.0}},
            ],
        }
    )
    raw = np.array([-5.0, 0.0, 3.0, 1e300, 99.0])
    out = FeatureTransform(spec, strict=True).transform_columns({"x": raw}, 5, ["item"])["item_num"]
    expected = (np.log1p(np.clip(raw, 0.0, 99.0)) - 1.0) / 0.5
    np.testing.assert_allclose(out[:, 0], expected.astype(np.float32), rtol=1e-6)


BOUND = st.one_of(st.none(), st.sampled_from([0.0, -0.0, 0.5, -3.0, 2.0, 1e30, 1e200]))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=20),
    BOUND,
    BOUND,
    st.booleans(),
    st.sampled_from(["standard", "none"]),
    st.sampled_from([1e-300, 1e-3, 0.5, 1e10]),
)
def test_scaling_skips_only_steps_that_change_nothing(
    values: list[float], lo: float | None, hi: float | None, log1p: bool, normalize: str, std: float
) -> None:
    """The pipeline leaves out max(x, 0) after a clip to a positive floor, and the clip to float32's
    range when the clip bounds keep every output far inside it: the same float32 bits as every
    step done, for any finite input and bounds."""
    if lo is not None and hi is not None and lo > hi:
        lo, hi = hi, lo
    stats = {"mean": 0.25, "std": std, "clip_lo": lo, "clip_hi": hi}
    feature = {"name": "x", "side": "item", "kind": "numeric", "log1p": log1p}
    spec = FeatureSpec.model_validate(
        {"name": "n", "features": [feature | {"normalize": normalize, "stats": stats}]}
    )
    x = np.array(values)
    out = FeatureTransform(spec, strict=True).transform_columns({"x": x}, len(x), ["item"])
    with np.errstate(all="ignore"):
        full = x if lo is None else np.maximum(x, lo)  # the clip as the pipeline has it
        full = full if hi is None else np.minimum(full, hi)
        full = np.log1p(np.maximum(full, 0.0)) if log1p else full
        full = (full - 0.25) / std if normalize == "standard" else full
        limit = float(np.finfo(np.float32).max)
        expected = np.minimum(np.maximum(full, -limit), limit).astype(np.float32)
    assert out["item_num"][:, 0].tobytes() == expected.tobytes()


def test_huge_values_without_clip_stay_finite_float32() -> None:
    out = item_arrays(True, score=[1e300, -1e300])["item_num"][:, 1]
    assert np.isfinite(out).all()


@pytest.mark.parametrize(
    ("prefix", "field"),
    [
        ("", "price"),
        ("candidates.features", "candidates.features.price"),
        ("candidates.features.", "candidates.features.price"),
    ],
)
def test_error_field_joins_the_prefix_and_the_feature_name(prefix: str, field: str) -> None:
    transform = FeatureTransform(fitted_spec(), strict=True)
    with pytest.raises(FeatureValueError) as error:
        transform.transform_records([{"price": "cheap"}], ["item"], field_prefix=prefix)
    assert error.value.field == field
    assert isinstance(error.value, ValueError)
    assert str(error.value).startswith(f"{field} (row 0): expected a number, got str 'cheap'")


def test_column_of_the_wrong_length_is_rejected() -> None:
    with pytest.raises(FeatureValueError, match="has 2 values, expected one per row \\(3\\)"):
        FeatureTransform(fitted_spec(), strict=False).transform_columns(
            {"price": [1.0, 2.0]}, 3, ["item"]
        )


def test_zero_rows_give_empty_arrays() -> None:
    arrays = FeatureTransform(fitted_spec(), strict=True).transform_records([], ALL_SIDES)
    assert arrays["user_seq"].shape == (0, 1, 3)
    assert arrays["item_num"].shape == (0, 2)


def test_an_unfitted_spec_is_refused() -> None:
    spec = FeatureSpec.model_validate(
        {"name": "raw", "features": [{"name": "c", "side": "item", "kind": "categorical"}]}
    )
    with pytest.raises(ValueError, match="'raw' is not fitted: run fit_spec"):
        FeatureTransform(spec, strict=True)
