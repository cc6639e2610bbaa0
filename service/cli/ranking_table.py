"""A /rank answer as a readable terminal table: every candidate, every objective, the fused score."""

from __future__ import annotations

from typing import Any

MAX_HISTORY_SHOWN = 5


def number(value: Any) -> str:
    """Probabilities with four decimals, larger values (watch time, prices) with fewer."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int):
        return str(value)
    size = abs(value)
    if size >= 100:
        return f"{value:.1f}"
    if size >= 1:
        return f"{value:.2f}"
    return f"{value:.4f}"


def _value(value: Any) -> str:
    if isinstance(value, list):
        shown = ", ".join(str(v) for v in value[-MAX_HISTORY_SHOWN:])
        more = f"... {len(value)} in all" if len(value) > MAX_HISTORY_SHOWN else ""
        return f"[{more + ', ' if more else ''}{shown}]"
    return number(value)


def fusion_formula(spec: dict[str, Any]) -> str:
    """``1·click + 0.05·log1p(watch_time)`` or ``(click + ε)^0.2 · ...`` from a fusion spec."""
    terms = spec.get("terms", {})

    def term(objective: str, cfg: dict[str, Any]) -> str:
        transform = cfg.get("transform", "identity")
        return objective if transform == "identity" else f"{transform}({objective})"

    if spec.get("kind") == "power_product":
        return " · ".join(f"({term(o, c)} + ε)^{c.get('weight', 1):g}" for o, c in terms.items())
    return " + ".join(f"{c.get('weight', 1):g}·{term(o, c)}" for o, c in terms.items())


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    lines = ["  ".join(cell.rjust(width) for cell, width in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * width for width in widths))
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return lines


def format_ranking(body: dict[str, Any], answer: dict[str, Any], round_trip_ms: float) -> str:
    """The request's user and context, then one line per ranked item, then where the time went."""
    model, fusion = answer["model"], answer.get("fusion") or {}
    user = body["user"]
    lines = [
        f"model   {model['name']} / {model['version']}",
        f"fusion  {fusion.get('name', '?')}: score = {fusion_formula(fusion.get('spec', {}))}",
        "user    "
        + " ".join(
            [f"id={user.get('id')}"]
            + [f"{k}={_value(v)}" for k, v in user.get("features", {}).items() if k != "user_id"]
        ),
    ]
    if body.get("context"):
        lines.append("context " + " ".join(f"{k}={_value(v)}" for k, v in body["context"].items()))
    features = {c["id"]: c.get("features", {}) for c in body["candidates"]}
    shown = [name for name in next(iter(features.values()), {}) if not name.endswith("_id")]
    objectives = list(answer["items"][0]["objectives"]) if answer["items"] else []
    header = ["rank", "item", *shown, *objectives, "score"]
    rows = [
        [str(item["rank"]), item["id"]]
        + [_value(features.get(item["id"], {}).get(name, "")) for name in shown]
        + [number(item["objectives"][name]) for name in objectives]
        + [number(item["score"])]
        for item in answer["items"]
    ]
    lines += ["", *_table(header, rows), ""]
    timings = (answer.get("explain") or {}).get("timings") or {}
    stages = ", ".join(f"{stage} {seconds * 1000:.2f} ms" for stage, seconds in timings.items())
    lines.append(
        f"{len(answer['items'])} candidates ranked in {round_trip_ms:.1f} ms round trip"
        + (f" (server: {stages})" if stages else "")
    )
    return "\n".join(lines)
