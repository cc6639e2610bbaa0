"""Column expressions of dataset.yaml: arithmetic over columns, nothing else."""

from __future__ import annotations

import numpy as np
import pytest

from training.data.expressions import Expression, ExpressionError

COLUMNS = {
    "click": np.array([1.0, 0.0, 1.0]),
    "watch_time": np.array([30.0, 0.0, 300.0]),
    "cart": np.array([0.0, 0.0, 1.0]),
    "wish": np.array([1.0, 0.0, 0.0]),
}


def test_weight_expression_reads_columns_and_functions() -> None:
    value = Expression("1 + log1p(watch_time) * click").evaluate(COLUMNS, 3)
    np.testing.assert_allclose(value, 1 + np.log1p([30.0, 0.0, 300.0]) * [1, 0, 1])
    assert Expression("1 + log1p(watch_time) * click").columns == {"watch_time", "click"}


def test_max_of_two_actions_and_comparisons_give_indicator_columns() -> None:
    np.testing.assert_array_equal(Expression("max(cart, wish)").evaluate(COLUMNS, 3), [1, 0, 1])
    np.testing.assert_array_equal(
        Expression("(watch_time > 60) or cart").evaluate(COLUMNS, 3), [0, 0, 1]
    )
    np.testing.assert_array_equal(Expression("0 < watch_time <= 60").evaluate(COLUMNS, 3), [1, 0, 0])
    np.testing.assert_allclose(Expression("clip(watch_time / 60, 0.5, 2)").evaluate(COLUMNS, 3),
                               [0.5, 0.5, 2.0])  # fmt: skip
    np.testing.assert_array_equal(Expression("where(click, 2, -1)").evaluate(COLUMNS, 3), [2, -1, 2])


def test_a_constant_expression_broadcasts_to_every_row() -> None:
    np.testing.assert_array_equal(Expression("2 ** 3").evaluate(COLUMNS, 3), [8.0, 8.0, 8.0])


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("__import__('os').system('true')", "calling"),
        ("click.__class__", "Attribute"),
        ("click[0]", "Subscript"),
        ("[x for x in click]", "ListComp"),
        ("lambda: 1", "Lambda"),
        ("'abc'", "constant"),
        ("log(click, 2)", "2 arguments"),
        ("min(click)", "1 arguments"),
        ("open", "open"),
        ("log", "function name"),
        ("sum(click, key=1)", "calling"),
    ],
)
def test_anything_outside_the_grammar_is_refused_by_name(text: str, named: str) -> None:
    if named == "open":
        with pytest.raises(ExpressionError, match="lacks|reads columns"):
            Expression(text).evaluate(COLUMNS, 3)  # just a (missing) column name
        return
    with pytest.raises(ExpressionError, match=named):
        Expression(text)


def test_unknown_columns_and_syntax_errors_say_what_is_wrong() -> None:
    with pytest.raises(ExpressionError, match=r"reads columns \['dwell'\]"):
        Expression("log1p(dwell)").evaluate(COLUMNS, 3)
    with pytest.raises(ExpressionError, match="does not parse"):
        Expression("1 +")
    with pytest.raises(ExpressionError, match="at most 500"):
        Expression("1" + " + 1" * 200)
