"""The ranking table the quickstart prints."""

from __future__ import annotations

from service.cli.ranking_table import format_ranking, fusion_formula, number


def test_fusion_formulas_read_like_the_readme() -> None:
    weighted = {"kind": "weighted_sum", "terms": {"click": {"weight": 1.0},
                "watch_time": {"weight": 0.05, "transform": "log1p"}}}  # fmt: skip
    assert fusion_formula(weighted) == "1·click + 0.05·log1p(watch_time)"
    power = {"kind": "power_product", "terms": {"click": {"weight": 0.2}}}
    assert fusion_formula(power) == "(click + ε)^0.2"


def test_numbers_keep_four_decimals_for_probabilities_and_fewer_for_large_values() -> None:
    assert number(0.012345) == "0.0123"
    assert number(29.764) == "29.76"
    assert number(1234.5) == "1234.5"
    assert number(7) == "7"


def test_table_has_one_row_per_item_with_item_features_objectives_and_score() -> None:
    body = {
        "user": {"id": "u1", "features": {"user_id": "u1", "history": [1, 2, 3, 4, 5, 6, 7]}},
        "context": {"hour": 9},
        "candidates": [
            {"id": "a", "features": {"item_id": "a", "item_price": 12.5}},
            {"id": "b", "features": {"item_id": "b", "item_price": 3.0}},
        ],
    }
    answer = {
        "model": {"name": "m", "version": "v1"},
        "fusion": {
            "name": "balanced",
            "spec": {"kind": "weighted_sum", "terms": {"click": {"weight": 1}}},
        },
        "items": [
            {"id": "b", "rank": 1, "score": 0.5, "objectives": {"click": 0.5, "watch_time": 40.0}},
            {"id": "a", "rank": 2, "score": 0.25, "objectives": {"click": 0.25, "watch_time": 9.5}},
        ],
        "explain": {"timings": {"user_graph": 0.0003}},
    }
    text = format_ranking(body, answer, 4.2)
    lines = text.splitlines()
    header = next(line for line in lines if line.lstrip().startswith("rank"))
    assert header.split() == ["rank", "item", "item_price", "click", "watch_time", "score"]
    rows = [line.split() for line in lines if line.strip()[:1].isdigit() and "ranked" not in line]
    assert rows == [["1", "b", "3.00", "0.5000", "40.00", "0.5000"],
                    ["2", "a", "12.50", "0.2500", "9.50", "0.2500"]]  # fmt: skip
    assert "history=[... 7 in all, 3, 4, 5, 6, 7]" in text
    assert "2 candidates ranked in 4.2 ms round trip (server: user_graph 0.30 ms)" in text
