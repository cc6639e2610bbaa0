"""Safe column expressions for ``dataset.yaml``: computed columns and per-task sample weights.

An expression is arithmetic over the impression log's columns, e.g. ``1 + log1p(watch_time)`` or
``max(cart, wish)``. It is parsed with ``ast`` and evaluated by walking the tree, vectorised with
numpy; only these forms exist, anything else (attribute access, indexing, other names called,
lambdas, comprehensions, strings) is refused with a message naming it. Nothing is ``eval``-ed.

* numbers, column names, parentheses;
* ``+ - * / **``, unary ``-`` and ``+``;
* comparisons ``< <= > >= == !=`` (1.0 where true, else 0.0), ``and``/``or``/``not`` on them;
* ``log``, ``log1p``, ``exp``, ``sqrt``, ``abs``, ``min(a, b, ...)``, ``max(a, b, ...)``,
  ``clip(x, lo, hi)``, ``where(condition, a, b)``.

A missing value (NaN) stays NaN through arithmetic; results are checked where they are used.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]
MAX_LENGTH = 500

_BINARY: dict[type[ast.operator], Callable[[Floats, Floats], Floats]] = {
    ast.Add: np.add,
    ast.Sub: np.subtract,
    ast.Mult: np.multiply,
    ast.Div: np.divide,
    ast.Pow: np.power,
}
_COMPARE: dict[type[ast.cmpop], Callable[[Floats, Floats], Any]] = {
    ast.Lt: np.less,
    ast.LtE: np.less_equal,
    ast.Gt: np.greater,
    ast.GtE: np.greater_equal,
    ast.Eq: np.equal,
    ast.NotEq: np.not_equal,
}
_UNARY_FUNCTIONS: dict[str, Callable[[Floats], Floats]] = {
    "log": np.log,
    "log1p": np.log1p,
    "exp": np.exp,
    "sqrt": np.sqrt,
    "abs": np.abs,
}
_FUNCTIONS = {*_UNARY_FUNCTIONS, "min", "max", "clip", "where"}


class ExpressionError(ValueError):
    """An expression that does not parse or uses something outside the grammar."""


class Expression:
    """A parsed, checked expression; ``columns`` are the names it reads."""

    def __init__(self, text: str) -> None:
        if not isinstance(text, str) or not text.strip():
            raise ExpressionError(f"expression {text!r} must be a non-empty string")
        if len(text) > MAX_LENGTH:
            raise ExpressionError(f"expression is {len(text)} characters; at most {MAX_LENGTH}")
        self.text = text.strip()
        try:
            tree = ast.parse(self.text, mode="eval")
        except SyntaxError as exc:
            raise ExpressionError(f"expression {self.text!r} does not parse: {exc.msg}") from None
        self.columns: set[str] = set()
        self._check(tree.body)
        self._tree = tree.body

    def __repr__(self) -> str:
        return f"Expression({self.text!r})"

    def _fail(self, node: ast.AST, what: str) -> ExpressionError:
        where = getattr(node, "col_offset", 0) + 1
        return ExpressionError(
            f"expression {self.text!r}: {what} is not allowed (column {where}); use "
            "numbers, column names, + - * / **, comparisons and "
            f"{', '.join(sorted(_FUNCTIONS))}"
        )

    def _check(self, node: ast.AST) -> None:
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, int | float):
                raise self._fail(node, f"the constant {node.value!r}")
        elif isinstance(node, ast.Name):
            if node.id in _FUNCTIONS:
                raise self._fail(node, f"the function name {node.id!r} without a call")
            self.columns.add(node.id)
        elif isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            self._check(node.left)
            self._check(node.right)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd | ast.Not):
            self._check(node.operand)
        elif isinstance(node, ast.BoolOp):
            for value in node.values:
                self._check(value)
        elif isinstance(node, ast.Compare) and all(type(op) in _COMPARE for op in node.ops):
            for part in (node.left, *node.comparators):
                self._check(part)
        elif isinstance(node, ast.Call):
            self._check_call(node)
        else:
            raise self._fail(node, type(node).__name__)

    def _check_call(self, node: ast.Call) -> None:
        if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS:
            raise self._fail(node, f"calling {ast.unparse(node.func)!r}")
        if node.keywords:
            raise self._fail(node, "a keyword argument")
        name, n = node.func.id, len(node.args)
        wanted = {"clip": 3, "where": 3}.get(name, 1)
        if (name in ("min", "max") and n < 2) or (name not in ("min", "max") and n != wanted):
            count = "at least 2" if name in ("min", "max") else str(wanted)
            raise self._fail(node, f"{name}() with {n} arguments ({count} expected)")
        for arg in node.args:
            self._check(arg)

    def evaluate(self, columns: Mapping[str, Any], rows: int) -> Floats:
        """The expression over ``rows`` rows of ``columns`` (float64, one value per row)."""
        missing = sorted(self.columns - set(columns))
        if missing:
            raise ExpressionError(
                f"expression {self.text!r} reads columns {missing} that the impressions lack; "
                f"columns: {sorted(columns)}"
            )
        with np.errstate(all="ignore"):
            value = self._eval(self._tree, columns)
        return np.broadcast_to(np.asarray(value, dtype=np.float64), (rows,)).copy()

    def _eval(self, node: ast.AST, columns: Mapping[str, Any]) -> Floats:
        if isinstance(node, ast.Constant):
            return np.full((), float(node.value))  # type: ignore[arg-type]
        if isinstance(node, ast.Name):
            return np.asarray(columns[node.id], dtype=np.float64)
        if isinstance(node, ast.BinOp):
            return _BINARY[type(node.op)](
                self._eval(node.left, columns), self._eval(node.right, columns)
            )
        if isinstance(node, ast.UnaryOp):
            operand = self._eval(node.operand, columns)
            if isinstance(node.op, ast.Not):
                return np.asarray(operand == 0, dtype=np.float64)
            negated: Floats = -operand
            return negated if isinstance(node.op, ast.USub) else operand
        if isinstance(node, ast.BoolOp):
            parts = [self._eval(v, columns) != 0 for v in node.values]
            combine = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
            truth = parts[0]
            for part in parts[1:]:
                truth = combine(truth, part)
            return np.asarray(truth, dtype=np.float64)
        if isinstance(node, ast.Compare):
            return self._compare(node, columns)
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
            raise self._fail(node, type(node).__name__)  # unreachable: _check refused it
        args = [self._eval(a, columns) for a in node.args]
        name = node.func.id
        if name in _UNARY_FUNCTIONS:
            return _UNARY_FUNCTIONS[name](args[0])
        if name == "clip":
            return np.clip(args[0], args[1], args[2])
        if name == "where":
            return np.where(args[0] != 0, args[1], args[2])
        reduce = np.fmin if name == "min" else np.fmax
        result: Floats = args[0]
        for arg in args[1:]:
            result = reduce(result, arg)
        return result

    def _compare(self, node: ast.Compare, columns: Mapping[str, Any]) -> Floats:
        left = self._eval(node.left, columns)
        result: Any = True
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            right = self._eval(right_node, columns)
            result = np.logical_and(result, _COMPARE[type(op)](left, right))
            left = right
        return np.asarray(result, dtype=np.float64)
