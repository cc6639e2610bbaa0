"""A training run directory -> ``PublishInputs``: the model, held-out rows, warm-up requests, report.

Held-out rows are the run's own test rows, else its validation rows, split exactly as training
split them (``training.train.run.held_out``), so parity is checked on rows the model never
trained on.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from training.export.publish import PublishInputs, warmup_requests
from training.export.verify import unsplit_reference
from training.train.arrays import to_arrays
from training.train.checkpoint import load_run
from training.train.run import CONFIG_FILE, METRICS_FILE, held_out

logger = logging.getLogger(__name__)

REPORT_FILES = (METRICS_FILE, CONFIG_FILE, "data_card.json")


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}


def inputs_from_run(
    run_dir: Path, *, data_dir: Path | None = None, rows: int = 2000
) -> PublishInputs:
    """Everything ``publish`` needs from ``RUN_DIR`` (written by ``python -m training train``)."""
    run_dir = Path(run_dir)
    run = load_run(run_dir)
    part, dataset = held_out(run, data_dir, limit=rows)
    frame = dataset.frame.head(rows).reset_index(drop=True)
    if len(frame) < 2:
        raise ValueError(
            f"only {len(frame)} held-out rows in {dataset.dir}: publishing verifies on the "
            f"run's {part} rows, so the data set needs more rows"
        )
    if len(frame) < 1000:
        logger.warning("verifying on %d held-out %s rows (fewer than 1,000)", len(frame), part)
    train_arrays = to_arrays(frame, run.spec, run.tasks)
    arrays = {name: np.ascontiguousarray(t.numpy()) for name, t in train_arrays.inputs.items()}
    warmup = warmup_requests(
        frame,
        run.spec.names("user"),
        run.spec.names("item"),
        run.spec.names("context"),
    )
    metrics = _read_json(run_dir / METRICS_FILE)
    metrics.pop("history", None)  # per-epoch curves live in the attached report and plot
    attachments = {name: run_dir / name for name in REPORT_FILES if (run_dir / name).is_file()}
    plots = run_dir / "plots"
    if plots.is_dir():
        attachments |= {f"plots/{p.name}": p for p in sorted(plots.glob("*.png"))}
    hyperparameters = run.config.model_dump(mode="json")
    hyperparameters["esmm"] = list(run.options.esmm) if run.options.esmm else None
    hyperparameters["position_bias_tasks"] = list(run.options.position_bias_tasks)
    hyperparameters["esm2"] = list(run.options.esm2) if run.options.esm2 else None
    hyperparameters["cascade"] = list(run.options.cascade)
    return PublishInputs(
        ranker=run.model,
        reference=unsplit_reference(run.model),
        architecture=run.config.arch.name,
        hyperparameters=hyperparameters,
        tasks=run.tasks,
        derived=run.derived,
        feature_spec=run.spec,
        arrays=arrays,
        warmup=warmup,
        metrics=metrics,
        data_card=_read_json(run_dir / "data_card.json"),
        attachments=attachments,
    )
