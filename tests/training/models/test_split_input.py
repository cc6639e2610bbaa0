"""SplitInput: the user half once, the item half per candidate, equal to the concatenated layer."""

from __future__ import annotations

import pytest
import torch

from training.models.split_input import SplitInput


def test_split_halves_add_up_to_the_concatenated_layer() -> None:
    torch.manual_seed(0)
    layer = SplitInput(5, 3, [4, 2, 3]).double()
    u, i = torch.randn(6, 5, dtype=torch.float64), torch.randn(6, 3, dtype=torch.float64)
    split = layer.combine(layer.user_part(u), i)
    full = layer.full(u, i)
    assert [c.shape for c in split] == [(6, 4), (6, 2), (6, 3)]
    for a, b in zip(split, full, strict=True):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)
    reference = torch.nn.functional.linear(
        torch.cat([u, i], dim=1),
        torch.cat([layer.weight_user, layer.weight_item], dim=1),
        layer.bias,
    )
    torch.testing.assert_close(torch.cat(full, dim=1), reference)


def test_one_user_part_broadcasts_over_all_candidates() -> None:
    torch.manual_seed(1)
    layer = SplitInput(4, 3, [2, 5])
    u, items = torch.randn(1, 4), torch.randn(7, 3)
    broadcast = layer.combine(layer.user_part(u), items)
    tiled = layer.full(u.expand(7, -1), items)
    for a, b in zip(broadcast, tiled, strict=True):
        torch.testing.assert_close(a, b)


def test_without_user_features_the_user_part_is_the_bias() -> None:
    layer = SplitInput(0, 3, [2, 2])
    part = layer.user_part(torch.zeros(3, 0))
    torch.testing.assert_close(part, layer.bias.expand(3, -1))
    items = torch.randn(3, 3)
    for a, b in zip(layer.combine(part, items), layer.full(torch.zeros(3, 0), items), strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize(
    ("user_dim", "item_dim", "widths", "message"),
    [(2, 0, [1], "item_dim >= 1"), (-1, 2, [1], "user_dim >= 0"), (2, 2, [], "non-empty")],
)
def test_impossible_shapes_are_rejected(
    user_dim: int, item_dim: int, widths: list[int], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        SplitInput(user_dim, item_dim, widths)
