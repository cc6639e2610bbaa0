"""DUPN's behaviour encoder (LSTM then attention) in the user tower and through the ONNX split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from tests.training.models.small import TASKS, USER_KEYS, arch, random_batch, small_layout
from training.export.onnx_split import export_split
from training.export.verify import unsplit_reference, verify_split
from training.models import MultiTaskRanker
from training.models.user_tower import LSTMAttention


def lstm_ranker() -> MultiTaskRanker:
    torch.manual_seed(0)
    return MultiTaskRanker(
        small_layout(), TASKS, arch("mmoe", user_encoder="lstm_attention", lstm_hidden=6)
    )


def test_lstm_encoding_of_a_padded_sequence_equals_the_unpadded_one() -> None:
    torch.manual_seed(0)
    encoder = LSTMAttention(item_dim=3, hidden=5, query_dim=2, attention_dim=4)
    table = torch.nn.Embedding(10, 3)
    profile = torch.randn(1, 2)
    short = torch.tensor([[4, 7, 2]])
    padded = torch.tensor([[4, 7, 2, 0, 0, 0, 0]])
    with torch.no_grad():
        table.weight[0] = 50.0  # a loud padding row: it must reach neither the LSTM nor the pool
        torch.testing.assert_close(
            encoder(table(padded), padded, profile), encoder(table(short), short, profile)
        )


def test_lstm_encoder_depends_on_the_order_of_behaviours() -> None:
    torch.manual_seed(0)
    encoder = LSTMAttention(item_dim=3, hidden=5, query_dim=2, attention_dim=4)
    table = torch.nn.Embedding(10, 3)
    profile = torch.randn(1, 2)
    forward, backward = torch.tensor([[4, 7, 2]]), torch.tensor([[2, 7, 4]])
    with torch.no_grad():
        a = encoder(table(forward), forward, profile)
        b = encoder(table(backward), backward, profile)
    assert not torch.allclose(a, b)  # attention pooling alone would be order-free


def test_user_encoder_key_switches_the_tower_to_lstm_attention() -> None:
    model = lstm_ranker()
    assert all(isinstance(pool, LSTMAttention) for pool in model.user_tower.pools)
    assert model.user_tower.mlp is not None
    assert model.user_tower.mlp[0].in_features == model.user_tower.profile.out_dim + 2 * 6


def test_lstm_user_graph_exports_and_matches_pytorch_on_padded_histories(tmp_path: Path) -> None:
    model = lstm_ranker().eval()
    batch = random_batch(small_layout(), 24, seed=3)
    batch["user_seq"][0] = torch.tensor([[1, 2, 3, 4], [0, 0, 0, 0]])  # full and empty
    batch["user_seq"][1] = torch.tensor([[5, 0, 0, 0], [2, 3, 0, 0]])  # short histories
    arrays = {k: v.numpy() for k, v in batch.items()}
    export = export_split(model, arrays, [t.id for t in TASKS], tmp_path)
    report = verify_split(
        tmp_path, export.user, export.candidates, TASKS, arrays, unsplit_reference(model)
    )
    assert report.max_abs_diff < 1e-5
    session = ort.InferenceSession(str(tmp_path / "user.onnx"), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    assert "user_seq" in names
    with torch.no_grad():
        expected = model.user_representation(*(batch[k][1:2] for k in USER_KEYS)).numpy()
    got = session.run(None, {n: arrays[n][1:2] for n in names})[0]
    np.testing.assert_allclose(got, expected, atol=1e-5)
