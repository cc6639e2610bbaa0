"""Take out of an exported graph the stacking that PyTorch's export leaves between tasks.

A ranker computes one column per task and stacks them (``torch.stack(columns, dim=1)``), applies
each task's activation to a column of the stack, stacks again, and the export splits the result
into one output per task. Traced to ONNX, each stack is an ``Unsqueeze`` per column and a
``Concat``, and each column read back is a ``Gather`` on axis 1. onnxruntime keeps all of them (a
``Split`` and a ``Squeeze`` per task after its own rewrites): on the default preset 24 of the
candidate graph's 96 nodes after onnxruntime's optimizations (24 of 113 on the large one), each a
kernel call per request: without them the default graphs take 1.11x less time at 100 candidates,
1.04-1.11x at 500 and 1.04x at 2,000 (same weights, onnxruntime alone, alternating rounds).

:func:`skip_stacked_gathers` rewires every ``Gather(Concat(Unsqueeze(x_0), ..., Unsqueeze(x_m)),
k)`` on axis 1 to ``x_k`` itself, the same tensor bit for bit, and drops the nodes no longer read.
The export runs it on both graphs before the weights are stored; the verification against PyTorch
that follows checks the result like any export.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
from onnx import numpy_helper


def skip_stacked_gathers(model: onnx.ModelProto) -> int:
    """Rewire each axis-1 ``Gather`` of a stacked column to the column; returns how many."""
    graph = model.graph
    producer = {name: node for node in graph.node for name in node.output}
    constants = _int_constants(graph)
    replaced: dict[str, str] = {}
    for node in graph.node:
        column = _stacked_column(node, producer, constants)
        if column is not None:
            replaced[node.output[0]] = column
    if not replaced:
        return 0

    def source(name: str) -> str:
        while name in replaced:
            name = replaced[name]
        return name

    for node in graph.node:
        for i, name in enumerate(node.input):
            node.input[i] = source(name)
    kept = [node for node in graph.node if not all(name in replaced for name in node.output)]
    del graph.node[:]
    graph.node.extend(kept)
    _name_outputs(graph, source)
    _drop_unread(graph)
    return len(replaced)


def skip_stacked_gathers_in_file(path: Path) -> int:
    """:func:`skip_stacked_gathers` on an ONNX file in place (its weights stay where they are)."""
    model = onnx.load(str(path), load_external_data=False)
    count = skip_stacked_gathers(model)
    if count:
        onnx.save(model, str(path))
        onnx.checker.check_model(str(path))
    return count


def _int_constants(graph: onnx.GraphProto) -> dict[str, npt.NDArray[np.int64]]:
    """Integer tensors known before the graph runs: ``Constant`` nodes and initializers. Tensors
    whose data is in an external file (a graph over 2 GB, loaded without its data) are left out:
    they are tables, never the small index or axes a stack is read with."""
    tensors = [
        (init.name, init)
        for init in graph.initializer
        if init.data_location != onnx.TensorProto.EXTERNAL
    ]
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            tensors.append((node.output[0], node.attribute[0].t))
    return {
        name: numpy_helper.to_array(tensor).astype(np.int64)
        for name, tensor in tensors
        if tensor.data_type in (onnx.TensorProto.INT64, onnx.TensorProto.INT32)
    }


def _attribute(node: onnx.NodeProto, name: str, default: int) -> int:
    for attribute in node.attribute:
        if attribute.name == name:
            return int(onnx.helper.get_attribute_value(attribute))
    return default


def _unsqueezed_at_1(
    node: onnx.NodeProto | None, constants: dict[str, npt.NDArray[np.int64]]
) -> str | None:
    """The input of an ``Unsqueeze`` that inserts exactly axis 1, else None."""
    if node is None or node.op_type != "Unsqueeze":
        return None
    axes: list[int] | None = None
    if len(node.input) > 1:  # opset 13 on: the axes are an input
        given = constants.get(node.input[1])
        axes = None if given is None else [int(v) for v in given.reshape(-1)]
    else:  # before: an attribute
        for attribute in node.attribute:
            if attribute.name == "axes":
                axes = [int(v) for v in onnx.helper.get_attribute_value(attribute)]
    return node.input[0] if axes == [1] else None


def _stacked_column(
    node: onnx.NodeProto,
    producer: dict[str, onnx.NodeProto],
    constants: dict[str, npt.NDArray[np.int64]],
) -> str | None:
    """For ``Gather(Concat(Unsqueeze(x_0), ...), k, axis=1)``, the name of ``x_k``; else None."""
    if node.op_type != "Gather" or _attribute(node, "axis", 0) != 1:
        return None
    index = constants.get(node.input[1])
    if index is None or index.ndim != 0:  # a 0-d index drops the axis: the column itself
        return None
    concat = producer.get(node.input[0])
    if concat is None or concat.op_type != "Concat" or _attribute(concat, "axis", 0) != 1:
        return None
    columns = [_unsqueezed_at_1(producer.get(name), constants) for name in concat.input]
    k = int(index) + len(columns) if int(index) < 0 else int(index)
    if not 0 <= k < len(columns) or any(column is None for column in columns):
        return None
    return columns[k]


def _name_outputs(graph: onnx.GraphProto, source: Callable[[str], str]) -> None:
    """Give each graph output whose tensor was rewired its name back: rename the column it now is
    (when nothing else needs the column's own name), else add an ``Identity``."""
    inputs = {value.name for value in graph.input} | {init.name for init in graph.initializer}
    outputs = [value.name for value in graph.output]
    wanted = Counter(source(name) for name in outputs)
    for name in outputs:
        column = source(name)
        if column == name:
            continue
        if column in inputs or column in outputs or wanted[column] > 1:
            graph.node.append(onnx.helper.make_node("Identity", [column], [name]))
            continue
        for node in graph.node:
            for i, tensor in enumerate(node.output):
                if tensor == column:
                    node.output[i] = name
            for i, tensor in enumerate(node.input):
                if tensor == column:
                    node.input[i] = name
        for value in graph.value_info:
            if value.name == column:
                value.name = name


def _drop_unread(graph: onnx.GraphProto) -> None:
    """Remove nodes none of whose outputs is read (by a node or as a graph output)."""
    while True:
        read = {value.name for value in graph.output}
        read.update(name for node in graph.node for name in node.input)
        kept = [node for node in graph.node if any(name in read for name in node.output)]
        if len(kept) == len(graph.node):
            return
        del graph.node[:]
        graph.node.extend(kept)
