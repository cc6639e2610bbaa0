"""Pre-publish verification: every check passes on a good export and names itself when it fails."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from service.contracts.manifest import GraphSpec, TensorSpec
from tests.training.export.toy_ranker import TASKS, toy_arrays, toy_ranker
from training.export.onnx_split import SplitExport, export_split
from training.export.verify import VerificationError, unsplit_reference, verify_split

TASK_IDS = [t.id for t in TASKS]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SplitExport]:
    folder = tmp_path_factory.mktemp("verify")
    return folder, export_split(toy_ranker(), toy_arrays(8), TASK_IDS, folder)


def test_good_export_passes_on_1000_rows_and_reports_the_max_diff(exported) -> None:
    folder, export = exported
    result = verify_split(
        folder,
        export.user,
        export.candidates,
        TASKS,
        toy_arrays(1000, seed=3),
        unsplit_reference(toy_ranker()),
    )
    assert result.rows == 1000
    assert 0.0 <= result.max_abs_diff <= 1e-5
    assert result.max_rel_diff_regression is not None
    assert result.max_rel_diff_regression <= 1e-5
    assert result.batch_vs_single_max_abs_diff <= 1e-5
    assert result.batch_size == 32


def test_parity_failure_says_by_how_much(exported) -> None:
    folder, export = exported
    reference = unsplit_reference(toy_ranker())

    def shifted(arrays: dict[str, torch.Tensor]) -> torch.Tensor:
        return reference(arrays) + torch.tensor([1e-3, 0.0])

    with pytest.raises(
        VerificationError, match=r"'parity'.*> atol 1e-05 on 50 rows \(worst task click\)"
    ) as info:
        verify_split(folder, export.user, export.candidates, TASKS, toy_arrays(50), shifted)
    assert info.value.check == "parity"
    assert info.value.measured == pytest.approx(1e-3, rel=1e-2)


def test_model_with_different_weights_fails_parity(exported) -> None:
    folder, export = exported
    other = unsplit_reference(toy_ranker(seed=1))
    with pytest.raises(VerificationError, match="parity"):
        verify_split(folder, export.user, export.candidates, TASKS, toy_arrays(50), other)


def test_output_names_must_match_the_manifest(exported) -> None:
    folder, export = exported
    renamed = [TensorSpec(name="like", dtype="float32", shape=["N"]), export.candidates.outputs[1]]
    candidates = GraphSpec(
        file=export.candidates.file, inputs=export.candidates.inputs, outputs=renamed
    )
    with pytest.raises(VerificationError, match=r"'names'.*candidates graph outputs"):
        verify_split(
            folder, export.user, candidates, TASKS, toy_arrays(8), unsplit_reference(toy_ranker())
        )


def test_declared_shapes_must_match_the_manifest(exported) -> None:
    folder, export = exported
    outputs = [TensorSpec(name="user_rep", dtype="float32", shape=[1, 99])]
    user = GraphSpec(file=export.user.file, inputs=export.user.inputs, outputs=outputs)
    with pytest.raises(VerificationError, match="'shapes'"):
        verify_split(
            folder, user, export.candidates, TASKS, toy_arrays(8), unsplit_reference(toy_ranker())
        )


def test_probabilities_outside_unit_interval_are_refused(tmp_path: Path) -> None:
    model = toy_ranker(squash=False)
    export = export_split(model, toy_arrays(8), TASK_IDS, tmp_path)
    with pytest.raises(VerificationError, match=r"'range'.*outside \[0, 1\]"):
        verify_split(
            tmp_path,
            export.user,
            export.candidates,
            TASKS,
            toy_arrays(50),
            unsplit_reference(model),
        )
