"""Other task sets over the simulator's files (*views*: YAML files beside ``dataset.yaml``).

``--data DIR/esm2.yaml`` trains on the same impressions with other tasks:

* ``esm2.yaml``: ESM² (Wen et al., SIGIR'20): click, action (add-to-cart or wish-list, computed as
  ``max(cart, wish)``) and convert, both in the click space; derived pCTAVR and pCTCVR. It also
  declares the ESMM pair, so ``--set esm2=false`` trains ESMM on the same tasks (and
  ``esmm=false`` as well: both post-click tasks on clicked rows only).
* ``nmtr.yaml``: NMTR (Gao et al., ICDE'19): the behaviours click -> cart -> convert, each on every
  impression (a cart or purchase implies the click), cascaded in that order.
* ``ltr.yaml`` (with requests only): the default tasks plus ``relevance``, a learning-to-rank task
  over the rows of one request with graded relevance ``click + like + share + 2 * convert``.
"""

from __future__ import annotations

from pathlib import Path

from service.contracts.tasks import DerivedObjective, TaskSpec
from training.data.dataset import DatasetConfig, Esm2Spec, EsmmPair

RELEVANCE = "click + like + share + 2 * convert"


def write_views(out: Path, meta: DatasetConfig) -> list[Path]:
    """Write the views of a simulator data directory whose ``dataset.yaml`` is ``meta``."""
    base = meta.model_copy(update={"derived": [], "esmm": None})
    click = TaskSpec(id="click", type="binary")
    esm2 = base.model_copy(
        update={
            "name": f"{meta.name}-esm2",
            "columns": {"action": "max(cart, wish)"},
            "tasks": [
                click,
                TaskSpec(id="action", type="binary", sample_space="click"),
                TaskSpec(id="convert", type="binary", sample_space="click"),
            ],
            "derived": [
                DerivedObjective(id="ctavr", product=["click", "action"]),
                DerivedObjective(id="ctcvr", product=["click", "convert"]),
            ],
            "esm2": Esm2Spec(ctr="click", action="action", cvr="convert"),
            "esmm": EsmmPair(ctr="click", cvr="convert"),
        }
    )
    nmtr = base.model_copy(
        update={
            "name": f"{meta.name}-nmtr",
            "tasks": [
                click,
                TaskSpec(id="cart", type="binary"),
                TaskSpec(id="convert", type="binary"),
            ],
            "funnel": ["click", "cart", "convert"],
        }
    )
    views = [("esm2.yaml", esm2), ("nmtr.yaml", nmtr)]
    if meta.group is not None:
        ltr = meta.model_copy(
            update={
                "name": f"{meta.name}-ltr",
                "columns": {"relevance": RELEVANCE},
                "tasks": [*meta.tasks, TaskSpec(id="relevance", type="rank")],
            }
        )
        views.append(("ltr.yaml", ltr))
    # model_copy skips validation: validate each view as load_dataset will
    return [DatasetConfig.model_validate(v.model_dump()).dump(out, name) for name, v in views]
