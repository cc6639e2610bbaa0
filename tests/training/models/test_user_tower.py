"""User tower: shared item table, masked attention pooling, learned vectors for missing values."""

from __future__ import annotations

import torch

from tests.training.models.small import USER_KEYS, random_batch, small_layout, small_ranker
from training.models.blocks import Embeddings
from training.models.user_tower import AttentionPooling


def test_sequences_use_the_item_sides_own_embedding_table() -> None:
    model = small_ranker("mmoe").eval()
    assert model.user_tower.item_embeddings.table(1) is model.item.embeddings.table(1)
    batch = random_batch(model.layout, 4)
    batch["user_seq"][:, 1, :] = torch.tensor([2, 3, 0, 0])
    with torch.no_grad():
        before = model.user_representation(*(batch[k] for k in USER_KEYS))
        model.item.embeddings.table(1).weight[3] += 1.0  # the item 3 vector the item side uses
        after = model.user_representation(*(batch[k] for k in USER_KEYS))
    assert not torch.allclose(before, after)


def test_padding_never_changes_the_pooled_sequence() -> None:
    torch.manual_seed(0)
    pool = AttentionPooling(item_dim=3, query_dim=2, attention_dim=4)
    table = torch.nn.Embedding(10, 3)
    profile = torch.randn(1, 2)
    short = torch.tensor([[4, 7, 0]])
    long = torch.tensor([[4, 7, 0, 0, 0, 0]])
    pooled = pool(table(short), short, profile)
    torch.testing.assert_close(pool(table(long), long, profile), pooled)
    with torch.no_grad():
        table.weight[0] = 100.0  # the padding row is a real (missing-value) row; still masked
    torch.testing.assert_close(pool(table(short), short, profile), pooled)


def test_all_padding_sequence_pools_to_zeros_with_finite_gradients() -> None:
    torch.manual_seed(0)
    pool = AttentionPooling(item_dim=3, query_dim=0, attention_dim=4)  # learned query
    table = torch.nn.Embedding(10, 3)
    ids = torch.tensor([[0, 0, 0], [5, 0, 0]])
    pooled = pool(table(ids), ids, torch.zeros(2, 0))
    torch.testing.assert_close(pooled[0], torch.zeros(3))
    torch.testing.assert_close(pooled[1], table.weight[5], atol=1e-6, rtol=1e-6)  # single item
    pooled.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in pool.parameters() if p.grad is not None)


def test_missing_value_index_has_a_learned_vector() -> None:
    torch.manual_seed(0)
    emb = Embeddings([5, 3], [2, 4])
    out = emb(torch.zeros(2, 2, dtype=torch.int64))  # every value missing / unknown
    assert out.shape == (2, 6)
    assert out.abs().sum() > 0
    out.sum().backward()
    grad = emb.table(0).weight.grad
    assert grad is not None
    assert grad[0].abs().sum() > 0


def test_user_representation_ignores_candidate_and_training_arrays() -> None:
    model = small_ranker("cgc", position_bias_tasks=["click"]).eval()
    batch = random_batch(small_layout(), 3)
    with torch.no_grad():
        rep = model.user_representation(*(batch[k] for k in USER_KEYS))
    assert rep.shape == (3, model.split.out_dim)
    assert torch.isfinite(rep).all()
