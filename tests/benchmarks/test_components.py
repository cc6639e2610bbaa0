"""``benchmarks/components.py``: a callgrind file's instructions by the component they ran in,
each counted once (a call's inclusive cost is the callee's, not the caller's)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "components.py"

# Two objects, names compressed after their first mention; python's function calls into numpy
# (the inclusive 500 after ``calls=`` is numpy's, already counted under numpy's own lines).
CALLGRIND = """\
# callgrind format
version: 1
positions: line
events: Ir
summary: 1737

ob=(1) /usr/lib/libpython3.11.so.1.0
fl=(1) ceval.c
fn=(1) _PyEval_EvalFrameDefault
10 1000
+2 200
cob=(2) /venv/lib/numpy/_core/_multiarray_umath.cpython-311-x86_64-linux-gnu.so
cfi=(2) loops.c
cfn=(2) add
calls=3 40
14 500

ob=(2)
fl=(2)
fn=(2)
40 300
* 200
ob=(3) /lib/x86_64-linux-gnu/libc.so.6
fl=(3) memcpy.S
fn=(3) __memmove_avx_unaligned_erms
1 37
"""


@pytest.fixture(scope="module")
def components() -> ModuleType:
    spec = importlib.util.spec_from_file_location("components", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_instructions_count_where_they_ran(components: ModuleType, tmp_path: Path) -> None:
    path = tmp_path / "callgrind.out"
    path.write_text(CALLGRIND)
    counts = components.callgrind_by_component(path)
    assert counts == {
        "Python interpreter": 1200,
        "numpy": 500,
        components.LIBC: 37,
    }
    assert sum(counts.values()) == 1737  # the file's own total: nothing counted twice


def test_shared_objects_are_named_by_file_name(components: ModuleType) -> None:
    assert components.component("/x/onnxruntime_pybind11_state.so") == "onnxruntime (graphs)"
    assert components.component("/x/service/_speedups.cpython-311.so") == "mtrank C extension"
    assert components.component("/x/orjson/orjson.cpython-311.so") == "JSON (orjson, msgspec)"
    assert components.component("/x/libcrypto.so.3") == components.OTHER  # not libc


def test_the_instruction_table_compares_two_trees_by_component(
    capsys: pytest.CaptureFixture[str],
) -> None:
    benchmarks = str(SCRIPT.parent)
    sys.path.insert(0, benchmarks)  # rank_cpu imports its sibling scripts
    try:
        spec = importlib.util.spec_from_file_location("rank_cpu", SCRIPT.parent / "rank_cpu.py")
        assert spec is not None
        assert spec.loader is not None
        rank_cpu = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(rank_cpu)
    finally:
        sys.path.remove(benchmarks)
    rank_cpu.print_components(
        {
            "this": {"onnxruntime (graphs)": 6.8e6, "Python interpreter": 2.0e6},
            "baseline": {"onnxruntime (graphs)": 6.8e6, "Python interpreter": 3.0e6},
        }
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| component | this | baseline | baseline / this |"
    assert "| onnxruntime (graphs) | 6.80 | 6.80 | 1.00x |" in lines
    assert "| Python interpreter | 2.00 | 3.00 | 1.50x |" in lines
    assert not any("numpy" in line for line in lines)  # no instructions in any tree: no row
