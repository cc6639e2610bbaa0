"""Building blocks shared by every architecture: MLPs, embeddings, group encoders, task towers."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from training.models.config import Norm
from training.models.layout import GroupLayout


def norm_layer(kind: Norm, width: int) -> list[nn.Module]:
    """The normalisation module for a ``width``-wide pre-activation (none: no module)."""
    if kind == "batch":
        return [nn.BatchNorm1d(width)]
    if kind == "layer":
        return [nn.LayerNorm(width)]
    return []


class MLP(nn.Sequential):
    """Linear -> [norm] -> ReLU -> Dropout, once per width in ``hidden``; ``out_dim`` = hidden[-1]."""

    def __init__(
        self, in_dim: int, hidden: Sequence[int], dropout: float = 0.0, norm: Norm = "none"
    ) -> None:
        layers: list[nn.Module] = []
        for width in hidden:
            layers += [nn.Linear(in_dim, width), *norm_layer(norm, width)]
            layers += [nn.ReLU(), nn.Dropout(dropout)]
            in_dim = width
        super().__init__(*layers)
        self.out_dim = in_dim


class MLPRest(nn.Sequential):
    """An MLP whose first Linear lives elsewhere (in ``SplitInput`` or a fused layer).

    Takes that first layer's pre-activation (B, hidden[0]) and applies [norm], ReLU, Dropout and
    the layers for ``hidden[1:]``; ``out_dim`` = hidden[-1]. The norm acts on the full first-layer
    output ``W_u u + W_i i + b``, in the candidate graph, so the split stays exact.
    """

    def __init__(self, hidden: Sequence[int], dropout: float = 0.0, norm: Norm = "none") -> None:
        if not hidden:
            raise ValueError("MLPRest needs at least one width (the first layer's)")
        rest = MLP(hidden[0], hidden[1:], dropout, norm)
        super().__init__(*norm_layer(norm, hidden[0]), nn.ReLU(), nn.Dropout(dropout), *rest)
        self.out_dim = rest.out_dim


class Embeddings(nn.Module):
    """One table per categorical column; (B, C) indices -> (B, sum(dims)) concatenated vectors.

    Index 0 (missing or out-of-vocabulary) is an ordinary learned row, so unseen values get a
    trained vector instead of zeros. Rows start as N(0, init_std^2); the default 1 is the scale of
    the standardised numerics, so first-layer pre-activations follow the inputs rather than the
    biases (with tiny embeddings, ReLU units with a negative bias start dead for every input and
    never recover).
    """

    def __init__(
        self, cardinalities: Sequence[int], dims: Sequence[int], init_std: float = 1.0
    ) -> None:
        super().__init__()
        self.tables = nn.ModuleList(
            nn.Embedding(c, d) for c, d in zip(cardinalities, dims, strict=True)
        )
        if init_std != 1.0:  # nn.Embedding already draws N(0, 1)
            for table in self.tables:
                nn.init.normal_(table.weight, std=init_std)  # type: ignore[arg-type]
        self.out_dim = sum(dims)

    def table(self, column: int) -> nn.Embedding:
        table: nn.Embedding = self.tables[column]  # type: ignore[assignment]
        return table

    def forward(self, idx: Tensor) -> Tensor:
        parts = [table(idx[:, c]) for c, table in enumerate(self.tables)]  # C x (B, d_c)
        return torch.cat(parts, dim=1)  # (B, sum d_c)


class GroupEncoder(nn.Module):
    """A group's categorical embeddings followed by its numeric columns as they are (normalised)."""

    def __init__(self, group: GroupLayout, init_std: float = 1.0) -> None:
        super().__init__()
        self.embeddings = Embeddings(group.cardinalities, group.embedding_dims, init_std)
        self.n_categorical = group.n_categorical
        self.n_numeric = group.n_numeric
        self.out_dim = group.width

    def forward(self, cat: Tensor, num: Tensor) -> Tensor:
        # Which parts exist is fixed by the layout at construction: no data-dependent branch.
        parts = []
        if self.n_categorical:
            parts.append(self.embeddings(cat))  # (B, sum d)
        if self.n_numeric:
            parts.append(num)  # (B, n_numeric)
        if not parts:
            return torch.zeros_like(num[:, :0])  # (B, 0)
        return torch.cat(parts, dim=1)


class Tower(nn.Module):
    """A task head: MLP over the task representation, then one output unit -> (B, 1)."""

    def __init__(
        self, in_dim: int, hidden: Sequence[int], dropout: float = 0.0, norm: Norm = "none"
    ) -> None:
        super().__init__()
        self.mlp = MLP(in_dim, hidden, dropout, norm)
        self.out = nn.Linear(self.mlp.out_dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.out(self.mlp(x))  # (B, 1)
        return out


class MultiTaskCore(nn.Module, ABC):
    """What every architecture provides to the ranker.

    ``first_widths``: the widths of the first layers it needs from ``SplitInput`` (in order);
    ``forward(chunks)`` takes those pre-activations and returns one (B, out_dim) representation per
    task and, for mixture-of-experts models, one (B, n_experts) gate per task (else an empty list).
    """

    first_widths: list[int]
    out_dim: int

    @abstractmethod
    def forward(self, chunks: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]: ...


def layer_products(
    x: Tensor, weight: Tensor, offset: Tensor, widths: Sequence[int]
) -> list[Tensor]:
    """``x @ weight.T + offset`` cut into layers of ``widths`` columns, one product per layer.

    ``weight`` (sum(widths), in) holds the layers' rows one after the other; ``offset`` (D,) or
    (1|N, D) is added to every row. One product per layer rather than one product split afterwards:
    in ONNX a split copies every pre-activation once more (11 % of the large preset's candidate
    graph at 2,000 candidates), while each layer's product writes its own where the layer reads it.
    PyTorch's split is a view, and both ways train at the same speed."""
    products = []
    start = 0
    for width in widths:
        end = start + width
        products.append(x @ weight[start:end].T + offset[..., start:end])
        start = end
    return products


def mix(gate: Tensor, experts: list[Tensor]) -> Tensor:
    """Gate-weighted sum of expert outputs: (B, E) x E * (B, d) -> (B, d).

    Exported to ONNX as a batched product (B, 1, E) @ (B, E, d): onnxruntime's Mul and ReduceSum
    materialise a (B, E, d) tensor per task, 27 % of the large preset's candidate graph at 2,000
    candidates, and its batched MatMul takes about half as long. PyTorch trains faster the other
    way round (its batched product of tiny matrices, backward included, about 3x slower on a CPU).
    The two agree to float32 rounding; the export is verified against PyTorch before it publishes."""
    stacked = torch.stack(experts, dim=1)  # (B, E, d)
    if torch.onnx.is_in_onnx_export():
        return torch.matmul(gate.unsqueeze(1), stacked).squeeze(1)  # (B, d)
    return (gate.unsqueeze(-1) * stacked).sum(dim=1)  # (B, d)
