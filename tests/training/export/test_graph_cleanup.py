"""The stacking between tasks is taken out of an exported graph, and nothing else changes."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from training.export.graph_cleanup import skip_stacked_gathers, skip_stacked_gathers_in_file

N = "N"


def _const(name: str, value: npt.ArrayLike) -> onnx.NodeProto:
    array = np.asarray(value, dtype=np.int64)
    return helper.make_node("Constant", [], [name], value=onnx.numpy_helper.from_array(array, name))


def _vector(name: str) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, [N])


def _model(
    nodes: list[onnx.NodeProto], inputs: list[str], outputs: list[onnx.ValueInfoProto]
) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", [_vector(name) for name in inputs], outputs)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _stacked(columns: list[str], out: str) -> list[onnx.NodeProto]:
    """``torch.stack(columns, dim=1)`` as the exporter writes it."""
    nodes = [_const(f"{out}_axes", [1])]
    for column in columns:
        nodes.append(helper.make_node("Unsqueeze", [column, f"{out}_axes"], [f"{column}_u"]))
    nodes.append(helper.make_node("Concat", [f"{c}_u" for c in columns], [out], axis=1))
    return nodes


def _read(
    stack: str, k: int, out: str, axis: int = 1, index_shape: tuple[int, ...] = ()
) -> list[onnx.NodeProto]:
    """``stack[:, k]`` (or along ``axis``; a 1-D index keeps the axis) as the exporter writes it."""
    index = np.full(index_shape, k)
    return [
        _const(f"{out}_k", index),
        helper.make_node("Gather", [stack, f"{out}_k"], [out], axis=axis),
    ]


def _run(model: onnx.ModelProto, feed: dict[str, npt.NDArray[np.float32]]) -> list[Any]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    outputs: list[Any] = session.run(None, feed)
    return outputs


def _feed() -> dict[str, npt.NDArray[np.float32]]:
    rng = np.random.default_rng(0)
    return {name: rng.normal(size=7).astype(np.float32) for name in ("x0", "x1", "x2")}


def _tasks_model() -> onnx.ModelProto:
    """Three logits stacked, each column's activation read back, stacked again, split into
    outputs: the tail of an exported candidate graph."""
    nodes = [
        helper.make_node("Relu", ["x0"], ["l0"]),
        helper.make_node("Neg", ["x1"], ["l1"]),
        helper.make_node("Abs", ["x2"], ["l2"]),
    ]
    nodes += _stacked(["l0", "l1", "l2"], "logits")
    nodes += _read("logits", 0, "c0") + _read("logits", 1, "c1") + _read("logits", -1, "c2")
    nodes += [
        helper.make_node("Sigmoid", ["c0"], ["p0"]),
        helper.make_node("Sigmoid", ["c1"], ["p1"]),
        helper.make_node("Exp", ["c2"], ["p2"]),
    ]
    nodes += _stacked(["p0", "p1", "p2"], "pred")
    nodes += _read("pred", 0, "click") + _read("pred", 1, "like") + _read("pred", 2, "time")
    outputs = [_vector("click"), _vector("like"), _vector("time")]
    return _model(nodes, ["x0", "x1", "x2"], outputs)


def test_each_output_is_its_column_with_the_same_values() -> None:
    model = _tasks_model()
    before = _run(model, _feed())
    assert skip_stacked_gathers(model) == 6
    onnx.checker.check_model(model)
    ops = Counter(node.op_type for node in model.graph.node)
    assert ops["Concat"] == ops["Gather"] == ops["Unsqueeze"] == 0, ops
    assert [o.name for o in model.graph.output] == ["click", "like", "time"]
    for got, want in zip(_run(model, _feed()), before, strict=True):
        np.testing.assert_array_equal(got, want)  # the same tensors: bit for bit
    producers = {node.output[0]: node.op_type for node in model.graph.node}
    assert producers["click"] == "Sigmoid"
    assert producers["time"] == "Exp"


def test_a_gather_that_is_not_a_column_of_a_stack_stays() -> None:
    nodes = [helper.make_node("Relu", ["x0"], ["l0"]), helper.make_node("Neg", ["x1"], ["l1"])]
    nodes += _stacked(["l0", "l1"], "s")
    nodes += _read("s", 1, "keeps_axis", index_shape=(1,))  # (N, 1): the axis is kept
    nodes += _read("s", 0, "rows", axis=0)  # a row, not a column
    nodes += _read("s", 2, "out_of_range")  # onnxruntime's error to give, not ours to hide
    nodes.append(helper.make_node("Concat", ["x0", "x1"], ["flat"], axis=0))
    nodes += _read("flat", 0, "not_stacked", axis=0)
    model = _model(
        nodes,
        ["x0", "x1"],
        [
            helper.make_tensor_value_info("keeps_axis", TensorProto.FLOAT, [N, 1]),
            helper.make_tensor_value_info("rows", TensorProto.FLOAT, [2]),
            helper.make_tensor_value_info("out_of_range", TensorProto.FLOAT, [N]),
            helper.make_tensor_value_info("not_stacked", TensorProto.FLOAT, []),
        ],
    )
    count = len(model.graph.node)
    assert skip_stacked_gathers(model) == 0
    assert len(model.graph.node) == count


def test_a_column_that_is_an_input_or_two_outputs_gets_an_identity(tmp_path: Path) -> None:
    nodes = [helper.make_node("Relu", ["x1"], ["l1"])]
    nodes += _stacked(["x0", "l1"], "s")
    nodes += _read("s", 0, "first") + _read("s", 1, "second") + _read("s", 1, "again")
    nodes.append(helper.make_node("Neg", ["again"], ["negated"]))
    outputs = [_vector("first"), _vector("second"), _vector("again"), _vector("negated")]
    model = _model(nodes, ["x0", "x1"], outputs)
    path = tmp_path / "g.onnx"
    onnx.save(model, str(path))
    assert skip_stacked_gathers_in_file(path) == 3
    cleaned = onnx.load(str(path))
    identities = {n.output[0]: n.input[0] for n in cleaned.graph.node if n.op_type == "Identity"}
    assert identities == {"first": "x0", "second": "l1", "again": "l1"}
    feed = {k: v for k, v in _feed().items() if k in ("x0", "x1")}
    for got, want in zip(_run(cleaned, feed), _run(model, feed), strict=True):
        np.testing.assert_array_equal(got, want)


def test_a_file_without_stacks_is_left_as_it_was(tmp_path: Path) -> None:
    model = _model([helper.make_node("Relu", ["x0"], ["y"])], ["x0"], [_vector("y")])
    path = tmp_path / "plain.onnx"
    onnx.save(model, str(path))
    written = path.read_bytes()
    assert skip_stacked_gathers_in_file(path) == 0
    assert path.read_bytes() == written


def test_a_graph_with_weights_in_an_external_file_is_cleaned(tmp_path: Path) -> None:
    """A graph over 2 GB is exported with its weights in a separate file; an integer table among
    them is not read to find the stacks (it cannot be: the file is loaded without its data)."""
    model = _tasks_model()
    table = onnx.numpy_helper.from_array(np.arange(4096, dtype=np.int64), "item_ids")
    model.graph.initializer.append(table)
    path = tmp_path / "g.onnx"
    onnx.save(model, str(path), save_as_external_data=True, location="g.data", size_threshold=0)
    assert skip_stacked_gathers_in_file(path) == 6
    cleaned = onnx.load(str(path))
    assert onnx.numpy_helper.to_array(cleaned.graph.initializer[0]).tolist() == list(range(4096))
    for got, want in zip(_run(cleaned, _feed()), _run(_tasks_model(), _feed()), strict=True):
        np.testing.assert_array_equal(got, want)
