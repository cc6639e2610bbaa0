"""Rows per second of the vectorized FeatureTransform against a naive per-row Python transform.

Both run in the same process on the same rows (user id hashed, age by vocabulary, a numeric
activity, a 20-id history sharing the item vocabulary, item id, hashed category, log1p price and an
hour), and both must produce the same arrays before any timing is printed. The vectorized transform
is timed on JSON-like lists (what /rank sends) and on numpy arrays (what training passes, from
``frame[col].to_numpy()``).

    python benchmarks/transform_speed.py [--rows 1000 100000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import numpy.typing as npt

from service.contracts.feature_spec import CategoricalFeature, FeatureSpec, NumericFeature, Side
from service.contracts.fitting import fit_spec
from service.contracts.transform import FeatureTransform

SCENARIOS: dict[str, list[Side]] = {
    "rows": ["user", "item", "context"],  # training: every side, 0-25 history ids per row
    "candidates": ["item", "context"],  # serving: the per-candidate part of a /rank request
}
Arrays = dict[str, npt.NDArray[Any]]


def make_spec() -> FeatureSpec:
    return FeatureSpec.model_validate(
        {
            "name": "bench",
            "features": [
                {"name": "user_id", "side": "user", "kind": "categorical", "encoding": "hash"}
                | {"buckets": 50_000},
                {"name": "user_age", "side": "user", "kind": "categorical"},
                {"name": "user_activity", "side": "user", "kind": "numeric", "clip": "auto"},
                {"name": "history", "side": "user", "kind": "sequence", "max_length": 20}
                | {"item_feature": "item_id"},
                {"name": "item_id", "side": "item", "kind": "categorical"},
                {"name": "item_cat", "side": "item", "kind": "categorical", "encoding": "hash"}
                | {"buckets": 1000},
                {"name": "item_price", "side": "item", "kind": "numeric", "log1p": True}
                | {"clip": "auto"},
                {"name": "hour", "side": "context", "kind": "categorical"},
            ],
        }
    )


def make_records(n: int, seed: int = 0) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    items = rng.integers(0, 5000, (n, 25)).tolist()
    lengths = rng.integers(0, 26, n).tolist()
    return [
        {
            "user_id": f"u{rng_id}",
            "user_age": int(age),
            "user_activity": float(act),
            "history": [f"i{j}" for j in items[row][: lengths[row]]],
            "item_id": f"i{items[row][0]}",
            "item_cat": f"c{cat}",
            "item_price": float(price),
            "hour": int(hour),
        }
        for row, (rng_id, age, act, cat, price, hour) in enumerate(
            zip(
                rng.integers(0, 100_000, n).tolist(),
                rng.integers(18, 80, n).tolist(),
                rng.gamma(2.0, 3.0, n).tolist(),
                rng.integers(0, 300, n).tolist(),
                rng.lognormal(3.0, 1.0, n).tolist(),
                rng.integers(0, 24, n).tolist(),
                strict=True,
            )
        )
    ]


def fnv1a_64(text: str) -> int:
    value = 0xCBF29CE484222325
    for octet in text.encode("utf-8"):
        value = ((value ^ octet) * 0x100000001B3) % 2**64
    return value


def naive_transform(spec: FeatureSpec, records: list[dict[str, Any]], sides: list[Side]) -> Arrays:
    """One row and one feature at a time in plain Python (valid values only)."""

    def code(feature: CategoricalFeature, value: Any) -> int:
        if value is None:
            return 0
        text = str(int(value)) if isinstance(value, float) else str(value)
        if feature.buckets is not None:
            return 1 + fnv1a_64(text) % feature.buckets
        return vocab[feature.name].get(text, 0)

    def number(feature: NumericFeature, value: Any) -> float:
        stats = feature.stats
        assert stats is not None
        x = float(value)
        if stats.clip_lo is not None and stats.clip_hi is not None:
            x = min(max(x, stats.clip_lo), stats.clip_hi)
        if feature.log1p:
            x = math.log1p(max(x, 0.0))
        return (x - stats.mean) / stats.std

    vocab = {
        f.name: {v: i + 1 for i, v in enumerate(f.vocabulary or [])}
        for f in spec.features
        if isinstance(f, CategoricalFeature)
    }
    out: dict[str, list[Any]] = {}
    for side in sides:
        cats, nums = [], []
        for record in records:
            cats.append(
                [code(f, record.get(f.name)) for f in spec.features_of(side, "categorical")]
            )
            nums.append([number(f, record.get(f.name)) for f in spec.features_of(side, "numeric")])
        out[f"{side}_cat"], out[f"{side}_num"] = cats, nums
    if "user" not in sides:
        return {
            k: np.array(v, dtype=np.float32 if k.endswith("_num") else np.int64)
            for k, v in out.items()
        }
    seqs = []
    for record in records:
        row = []
        for seq in spec.sequences():
            item = spec.item_feature_of(seq)
            ids = [code(item, v) for v in (record.get(seq.name) or [])][-seq.max_length :]
            row.append(ids + [0] * (seq.max_length - len(ids)))
        seqs.append(row)
    out["user_seq"] = seqs
    n = len(records)
    return {
        k: np.array(v, dtype=np.float32 if k.endswith("_num") else np.int64).reshape(n, -1)
        if k != "user_seq"
        else np.array(v, dtype=np.int64)
        for k, v in out.items()
    }


def best_seconds(run: Callable[[], Arrays], repeats: int) -> tuple[float, Arrays]:
    times, result = [], {}
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return min(times), result


def same_arrays(a: Arrays, b: Arrays) -> None:
    for key in b:
        if key.endswith("_num"):
            np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-6, err_msg=key)
        else:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1000, 100_000])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    train = make_records(20_000, seed=1)
    names = [f.name for f in make_spec().features]
    spec = fit_spec(make_spec(), {k: [r[k] for r in train] for k in names})
    transform = FeatureTransform(spec, strict=True)
    header = ("scenario", "rows", "naive rows/s", "lists rows/s", "numpy rows/s", "lists/naive")
    print(
        f"{header[0]:<11} {header[1]:>8} {header[2]:>13} {header[3]:>13} {header[4]:>13} {header[5]:>9}"
    )
    for n in args.rows:
        records = make_records(n)
        lists = {k: [r[k] for r in records] for k in names}
        arrays: dict[str, Any] = {k: np.array(v) for k, v in lists.items() if k != "history"}
        arrays["history"] = np.empty(n, dtype=object)  # like pandas: an object array of arrays
        arrays["history"][:] = [np.array(h, dtype=str) for h in lists["history"]]
        for scenario, sides in SCENARIOS.items():
            naive_s, expected = best_seconds(partial(naive_transform, spec, records, sides), 1)
            vectorized = partial(transform.transform_columns, n_rows=n, sides=sides)
            lists_s, got = best_seconds(partial(vectorized, lists), args.repeats)
            same_arrays(got, expected)
            numpy_s, got = best_seconds(partial(vectorized, arrays), args.repeats)
            same_arrays(got, expected)
            print(
                f"{scenario:<11} {n:>8} {n / naive_s:>13,.0f} {n / lists_s:>13,.0f} "
                f"{n / numpy_s:>13,.0f} {naive_s / lists_s:>8.1f}x"
            )


if __name__ == "__main__":
    main()
