"""Request bodies built from real users and items, with a realistic spread of candidates and users.

Users and items come from feature tables: the simulator's ``users.parquet`` / ``items.parquet`` (the
committed demo tables in ``demo/``) or your own Parquet or CSV files with an id column. Popularity is
skewed as in real traffic: users and items are drawn with probability ∝ 1 / rank^zipf over a seeded
random order, so a few users come back often (which the user-representation cache sees) and popular
items appear in many candidate lists. The number of candidates per request is log-normal around a
median, clipped to [1, max].

Two modes: ``ids`` sends the user id and candidate ids only (the service reads features from Redis,
loaded from the same tables by ``python -m service features load``); ``features`` sends every feature
the model takes in the body. With the model's feature spec, context features are drawn from their
fitted vocabularies and table columns the model does not take are left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import orjson

from service.contracts.feature_spec import CategoricalFeature, FeatureSpec, NumericFeature
from service.store.loader import canonical_id, read_rows

Mode = Literal["ids", "features"]
Row = dict[str, Any]


@dataclass(frozen=True)
class WorkloadConfig:
    mode: Mode = "ids"
    candidates: int = 200  # median candidates per request
    spread: float = 0.5  # sigma of the log-normal around the median; 0: always `candidates`
    max_candidates: int = 1000  # upper clip (the service refuses more than MTRANK_MAX_CANDIDATES)
    zipf: float = 1.0  # popularity skew of users and items; 0: uniform
    columnar: bool = False  # candidates as {ids, features} columns instead of a list of rows
    seed: int = 0

    def __post_init__(self) -> None:
        if self.candidates < 1 or self.max_candidates < 1:
            raise ValueError("candidates and max_candidates must be >= 1")
        if self.spread < 0 or self.zipf < 0:
            raise ValueError("spread and zipf must be >= 0")


@dataclass(frozen=True)
class Tables:
    """The entities requests are drawn from: feature rows and their ids (as the service keys them)."""

    users: list[Row]
    items: list[Row]
    user_ids: list[str]
    item_ids: list[str]

    @classmethod
    def read(
        cls, users: Path, items: Path, user_key: str = "user_id", item_key: str = "item_id"
    ) -> Tables:
        """Read both tables; a missing or empty table or id column is a ``ValueError`` naming it."""
        user_rows, user_ids = _rows_and_ids(users, user_key)
        item_rows, item_ids = _rows_and_ids(items, item_key)
        return cls(user_rows, item_rows, user_ids, item_ids)


def _rows_and_ids(path: Path, key: str) -> tuple[list[Row], list[str]]:
    rows = read_rows(path)
    if not rows:
        raise ValueError(f"{path}: the table is empty")
    if key not in rows[0]:
        raise ValueError(f"{path}: no id column {key!r} among {sorted(rows[0])}")
    return rows, [canonical_id(row[key], path=path, column=key) for row in rows]


def _popularity(n: int, zipf: float, rng: np.random.Generator) -> npt.NDArray[np.float64]:
    """Probabilities ∝ 1 / rank^zipf, ranks assigned in a seeded random order."""
    weights = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** zipf
    shuffled: npt.NDArray[np.float64] = weights[rng.permutation(n)]
    probabilities: npt.NDArray[np.float64] = shuffled / shuffled.sum()
    return probabilities


def _context_values(spec: FeatureSpec) -> dict[str, list[Any]]:
    """Values to draw each context feature from: its fitted vocabulary, or its mean."""
    values: dict[str, list[Any]] = {}
    for feature in spec.features:
        if feature.side != "context":
            continue
        if isinstance(feature, CategoricalFeature) and feature.vocabulary:
            values[feature.name] = [_typed(v) for v in feature.vocabulary]
        elif isinstance(feature, NumericFeature) and feature.stats is not None:
            values[feature.name] = [feature.stats.mean]
    return values


def _typed(value: str) -> str | int:
    """Vocabularies hold strings; integer-looking ones (hour "16") go back as integers."""
    return int(value) if value.lstrip("-").isdigit() else value


class Workload:
    """Draws /rank bodies; the same seed gives the same bodies."""

    def __init__(
        self, tables: Tables, config: WorkloadConfig, spec: FeatureSpec | None = None
    ) -> None:
        self.tables = tables
        self.config = config
        self.rng = np.random.default_rng(config.seed)
        self.user_p = _popularity(len(tables.users), config.zipf, self.rng)
        self.item_p = _popularity(len(tables.items), config.zipf, self.rng)
        self.user_features = self._names(spec, "user", tables.users[0])
        self.item_features = self._names(spec, "item", tables.items[0])
        self.context = _context_values(spec) if spec is not None else {}
        self._issued = 0
        self.drawn_counts: list[int] = []  # candidates of every body drawn so far
        self.drawn_users: set[str] = set()

    @staticmethod
    def _names(spec: FeatureSpec | None, side: Literal["user", "item"], row: Row) -> list[str]:
        if spec is None:
            return list(row)
        return [name for name in spec.names(side) if name in row]

    def candidate_count(self) -> int:
        cfg = self.config
        drawn = cfg.candidates * float(np.exp(cfg.spread * self.rng.standard_normal()))
        return int(np.clip(round(drawn), 1, min(cfg.max_candidates, len(self.tables.items))))

    def body(self, n_candidates: int | None = None) -> Row:
        """One request: a user, its context and candidates (``n_candidates`` or a drawn count)."""
        tables, features = self.tables, self.config.mode == "features"
        n = n_candidates if n_candidates is not None else self.candidate_count()
        n = min(n, len(tables.items))
        u = int(self.rng.choice(len(tables.users), p=self.user_p))
        picked = [
            int(i) for i in self.rng.choice(len(tables.items), n, replace=False, p=self.item_p)
        ]
        items = [tables.items[i] for i in picked]
        ids = [tables.item_ids[i] for i in picked]
        user_row = tables.users[u]
        user: Row = {"id": tables.user_ids[u]}
        if features:
            user["features"] = {name: user_row[name] for name in self.user_features}
        self._issued += 1
        self.drawn_counts.append(n)
        self.drawn_users.add(user["id"])
        body: Row = {"request_id": f"loadtest-{self._issued}", "user": user}
        if self.context:
            body["context"] = {
                name: values[int(self.rng.integers(len(values)))]
                for name, values in self.context.items()
            }
        if self.config.columnar:
            columns = {n: [r[n] for r in items] for n in self.item_features} if features else {}
            body["candidates"] = {"ids": ids, "features": columns}
        elif features:
            body["candidates"] = [
                {"id": i, "features": {n: r[n] for n in self.item_features}}
                for i, r in zip(ids, items, strict=True)
            ]
        else:
            body["candidates"] = [{"id": i} for i in ids]
        return body

    def encoded(self, count: int) -> list[bytes]:
        """``count`` distinct bodies as JSON bytes (built once, before a run, to keep sending cheap)."""
        return [orjson.dumps(self.body()) for _ in range(count)]

    def describe(self) -> dict[str, Any]:
        """The workload as drawn so far: mode, candidate-count spread, distinct users."""
        counts = np.asarray(self.drawn_counts or [0])
        cfg = self.config
        return {
            "mode": cfg.mode,
            "columnar": cfg.columnar,
            "bodies": len(self.drawn_counts),
            "distinct_users": len(self.drawn_users),
            "candidates": {
                "median_asked": cfg.candidates,
                "spread": cfg.spread,
                "p10": float(np.percentile(counts, 10)),
                "p50": float(np.percentile(counts, 50)),
                "p90": float(np.percentile(counts, 90)),
                "max": int(counts.max()),
            },
            "zipf": cfg.zipf,
            "users_in_table": len(self.tables.users),
            "items_in_table": len(self.tables.items),
            "seed": cfg.seed,
        }
