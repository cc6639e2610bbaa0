"""Large graphs keep their weights beside them: ``NAME.onnx`` + ``NAME.onnx.data``.

A protobuf message cannot pass 2 GiB, so a graph whose weights are larger (a hashed item-id table
of 10M rows x 64 dims is 2.56 GB: rows x dim x 4 bytes) is stored with onnx's external data
format: the graph in ``NAME.onnx``, every tensor over 1 KiB in one ``NAME.onnx.data`` file, which
onnxruntime reads from the model's folder when the service loads the version. Both files are in
the version's manifest checksums. Graphs under ``EXTERNAL_DATA_BYTES`` stay one file.
"""

from __future__ import annotations

import logging
from pathlib import Path

import onnx

logger = logging.getLogger(__name__)

EXTERNAL_DATA_BYTES = 1 << 30  # 1 GiB: well under protobuf's 2 GiB, with room for the graph


def data_file(graph_file: str) -> str:
    return graph_file + ".data"


def store_weights(path: Path, before: set[str], threshold: int = EXTERNAL_DATA_BYTES) -> list[str]:
    """The files of the graph just exported to ``path`` (graph first): the weights move to
    ``path.name + ".data"`` when the graph and any tensor files the exporter wrote beside it
    (files of ``path.parent`` not in ``before``) pass ``threshold`` bytes."""
    written = [p for p in path.parent.iterdir() if p.name not in before and p != path]
    size = path.stat().st_size + sum(p.stat().st_size for p in written)
    if size <= threshold and not written:
        return [path.name]
    model = onnx.load(str(path))  # with the exporter's external tensors, if it wrote any
    target = data_file(path.name)
    onnx.save_model(
        model,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=target,
        size_threshold=1024,
    )
    for stray in written:
        if stray.name != target and stray.exists():
            stray.unlink()
    logger.info("%s: %.2f GB of weights stored in %s", path.name, size / 1e9, target)
    return [path.name, target]
