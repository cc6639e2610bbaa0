import pytest
import torch

from training.data.simulator import simulator_spec
from training.train.feature_dropout import DroppedColumn, FeatureDropout

SPEC = simulator_spec(n_users=500, n_items=200)


def batch(rows: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return {
        "user_cat": torch.randint(1, 50, (rows, 4), generator=gen),
        "item_cat": torch.randint(1, 50, (rows, 2), generator=gen),
        "context_cat": torch.randint(1, 20, (rows, 2), generator=gen),
        "item_num": torch.rand(rows, 2, generator=gen),
    }


def test_names_map_to_their_model_array_and_column():
    dropout = FeatureDropout.from_spec(SPEC, {"user_id": 0.5, "item_category": 0.2, "device": 0.1})
    assert dropout.columns == [
        DroppedColumn("user_cat", 0, 0.5),
        DroppedColumn("item_cat", 1, 0.2),
        DroppedColumn("context_cat", 1, 0.1),
    ]


@pytest.mark.parametrize("name", ["item_price", "position", "history", "nope"])
def test_a_name_that_is_no_categorical_input_is_refused_with_the_ones_that_are(name):
    with pytest.raises(ValueError, match=rf"\['{name}'\].*user_id"):
        FeatureDropout.from_spec(SPEC, {name: 0.5})


def test_dropped_rows_become_missing_at_the_rate_and_nothing_else_changes():
    inputs = batch(20_000)
    before = {k: v.clone() for k, v in inputs.items()}
    torch.manual_seed(1)
    out = FeatureDropout.from_spec(SPEC, {"user_id": 0.3, "hour": 1.0})(inputs)
    for name, array in before.items():  # the caller's batch is left as it was
        assert torch.equal(inputs[name], array)
    dropped = out["user_cat"][:, 0] == 0
    assert 0.28 < dropped.float().mean() < 0.32
    assert torch.equal(out["user_cat"][~dropped, 0], before["user_cat"][~dropped, 0])
    assert torch.equal(out["user_cat"][:, 1:], before["user_cat"][:, 1:])
    assert bool((out["context_cat"][:, 0] == 0).all())
    assert torch.equal(out["context_cat"][:, 1], before["context_cat"][:, 1])
    assert out["item_cat"] is inputs["item_cat"]  # untouched arrays are not copied


def test_no_rates_leave_the_batch_as_it_is():
    inputs = batch(10)
    dropout = FeatureDropout.from_spec(SPEC, {"user_id": 0.0})
    assert not dropout
    assert dropout(inputs) is inputs
