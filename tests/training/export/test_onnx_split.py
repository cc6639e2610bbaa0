"""Split export on a toy ranker with MultiTaskRanker's interface: signatures and exactness."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from tests.training.export.toy_ranker import TASKS, toy_arrays, toy_ranker
from training.export.onnx_split import SplitExport, export_split

TASK_IDS = [t.id for t in TASKS]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SplitExport]:
    folder = tmp_path_factory.mktemp("split")
    return folder, export_split(toy_ranker(), toy_arrays(16), TASK_IDS, folder)


def run_pair(
    folder: Path, export: SplitExport, arrays: dict[str, np.ndarray], user_row: int, rows: slice
):
    user = ort.InferenceSession(str(folder / export.user.file), providers=["CPUExecutionProvider"])
    cand = ort.InferenceSession(
        str(folder / export.candidates.file), providers=["CPUExecutionProvider"]
    )
    rep = user.run(
        None, {n: arrays[n][user_row : user_row + 1] for n in export.user.input_names()}
    )[0]
    feed = {"user_rep": rep} | {n: arrays[n][rows] for n in export.candidates.input_names()[1:]}
    return np.stack(cand.run(None, feed), axis=1)


def test_signatures_list_only_non_empty_inputs_with_dynamic_n(
    exported: tuple[Path, SplitExport],
) -> None:
    _, export = exported
    assert export.user.input_names() == ["user_cat", "user_num", "user_seq"]
    assert [t.shape for t in export.user.inputs] == [[1, 2], [1, 1], [1, 1, 5]]
    assert export.user.outputs[0].model_dump() == {
        "name": "user_rep",
        "dtype": "float32",
        "shape": [1, 16],
    }
    # context_num has 0 columns: not an input
    assert export.candidates.input_names() == ["user_rep", "item_cat", "item_num", "context_cat"]
    assert [t.dtype for t in export.candidates.inputs] == ["float32", "int64", "float32", "int64"]
    assert export.candidates.inputs[1].shape == ["N", 1]
    assert [(t.name, t.shape) for t in export.candidates.outputs] == [
        ("click", ["N"]),
        ("watch_time", ["N"]),
    ]
    assert export.opset == 17


def test_split_graphs_equal_the_unsplit_model(exported: tuple[Path, SplitExport]) -> None:
    folder, export = exported
    arrays = toy_arrays(40, seed=1)  # rows never seen while tracing
    model = toy_ranker()
    onnx_scores = np.concatenate(
        [run_pair(folder, export, arrays, i, slice(i, i + 1)) for i in range(40)]
    )
    with torch.no_grad():
        reference = model.forward_unsplit(
            **{k: torch.from_numpy(v) for k, v in arrays.items()}
        ).numpy()
    np.testing.assert_allclose(onnx_scores, reference, atol=1e-5, rtol=1e-5)


def test_scoring_many_candidates_at_once_equals_one_by_one(
    exported: tuple[Path, SplitExport],
) -> None:
    folder, export = exported
    arrays = toy_arrays(100, seed=2)
    batch = run_pair(folder, export, arrays, 0, slice(0, 100))
    single = np.concatenate(
        [run_pair(folder, export, arrays, 0, slice(i, i + 1)) for i in range(100)]
    )
    assert batch.shape == (100, 2)
    np.testing.assert_allclose(batch, single, atol=1e-6, rtol=1e-6)


def test_too_few_sample_rows_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least 2 sample rows"):
        export_split(toy_ranker(), toy_arrays(1), TASK_IDS, tmp_path)


def test_missing_model_array_is_named(tmp_path: Path) -> None:
    arrays = toy_arrays(4)
    del arrays["user_seq"]
    with pytest.raises(ValueError, match="user_seq"):
        export_split(toy_ranker(), arrays, TASK_IDS, tmp_path)


def test_wrong_number_of_tasks_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="must return"):
        export_split(toy_ranker(), toy_arrays(4), ["click"], tmp_path)
