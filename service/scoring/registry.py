"""The model registry: load a published version, check everything, then swap one reference.

Loading (Triton-style explicit activation, "a failed reload leaves the loaded model unchanged"):

1. ``locate``: the named version, else the store's ``current`` pointer, else the newest version;
2. ``checksums``: ``ModelStore.verify`` recomputes every file's sha256 against the manifest;
3. ``manifest``: the fitted feature spec parses and its widths match both graphs' inputs;
4. ``fusion``: ``fusion.yaml`` parses and names only objectives of the manifest;
5. ``sessions``: onnxruntime sessions, inputs and outputs checked against the manifest;
6. ``warmup``: the manifest's warm-up requests run end to end (assembly, both graphs, fusion);
7. ``sanity``: every output finite, binary tasks in [0, 1].

Any failure raises ``ModelLoadError`` naming the step; what is served is untouched. A success is
installed by replacing the one ``routing`` reference (serving version plus an optional canary or
shadow); requests read it once, so a swap never mixes versions within a request.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt

from service.contracts.feature_spec import FeatureSpec
from service.contracts.fusion import FUSION_FILE, FusionConfig, derive_objectives, fuse
from service.contracts.manifest import Manifest, RankExample
from service.contracts.transform import FeatureTransform
from service.errors import ModelLoadError, RankError
from service.model_store import ModelStore
from service.scoring.assembly import FeatureAssembler, RankInput
from service.scoring.onnx_model import SplitSessions
from service.scoring.routing import Routing

try:
    from service import _speedups
except ImportError:  # built without a C compiler: numpy checks the scores
    _speedups = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class LoadedModel:
    """One validated, warmed-up version; immutable, shared by every request that read it."""

    name: str
    version: str
    manifest: Manifest
    spec: FeatureSpec
    fusion: FusionConfig
    assembler: FeatureAssembler
    sessions: SplitSessions
    loaded_at: datetime

    @property
    def transform(self) -> FeatureTransform:
        return self.assembler.transform

    @property
    def objectives(self) -> list[str]:
        return self.manifest.objective_ids()

    def objective_scores(
        self,
        user_rep: npt.NDArray[np.float32],
        arrays: dict[str, npt.NDArray[Any]],
        n: int,
        chunk: int | None = None,
    ) -> dict[str, Floats]:
        """Candidate graph over ``n`` rows, then derived objectives: every objective as float64."""
        outputs = self.sessions.score(user_rep, arrays, n, chunk=chunk)
        tasks = {task.id: outputs[task.output] for task in self.manifest.tasks}
        return derive_objectives(tasks, self.manifest.derived)

    @cached_property
    def _binary(self) -> frozenset[str]:
        return frozenset(t.id for t in self.manifest.tasks if t.type == "binary")

    def check_outputs(self, scores: dict[str, Floats]) -> None:
        """Raise ValueError unless every objective is finite and binary tasks lie in [0, 1].

        All objectives are checked in one C pass (else three numpy calls); only a failing set is
        walked one objective at a time, for the message naming the first bad one."""
        binary = self._binary
        columns = list(scores.values())
        unit = [name in binary for name in scores]
        if _speedups is not None and _speedups.scores_within(columns, unit):  # one C pass
            return  # None (columns of another kind) or False (a failing set): numpy decides
        if columns and len({c.shape for c in columns}) == 1 and columns[0].ndim == 1:
            stacked = np.stack(columns)  # (objectives, N)
            rows = [k for k, name in enumerate(scores) if name in binary]
            inside = stacked[rows]
            if np.isfinite(stacked).all() and (
                not inside.size or (inside.min() >= 0.0 and inside.max() <= 1.0)
            ):
                return
        for name, values in scores.items():
            if not np.isfinite(values).all():
                raise ValueError(
                    f"objective {name!r} has {int((~np.isfinite(values)).sum())} non-finite scores"
                )
            if name in binary and values.size and (values.min() < 0.0 or values.max() > 1.0):
                raise ValueError(
                    f"binary objective {name!r} spans [{values.min():.6g}, {values.max():.6g}], outside [0, 1]"
                )


class LoadStepError(ModelLoadError):
    """A load step failed; ``step`` names it (locate, checksums, ..., sanity)."""

    def __init__(self, message: str, *, step: str, version: str) -> None:
        super().__init__(message)
        self.step = step
        self.version = version


def _no_pause() -> None:
    return None


def example_input(example: RankExample) -> RankInput:
    """A manifest warm-up example as the engine's input."""
    names = sorted({name for c in example.candidates for name in c.features})
    return RankInput(
        user_id=None if example.user.id is None else str(example.user.id),
        user_features=dict(example.user.features),
        context=dict(example.context),
        candidate_ids=[str(c.id) for c in example.candidates],
        candidate_features={n: [c.features.get(n) for c in example.candidates] for n in names},
    )


def _check_widths(manifest: Manifest, spec: FeatureSpec) -> None:
    """The spec's column counts equal the graphs' declared input widths (non-empty groups only)."""
    seqs = spec.sequences()
    widths: dict[str, list[int]] = {
        "user_cat": [len(spec.cardinalities("user"))],
        "user_num": [len(spec.numeric_names("user"))],
        "user_seq": [len(seqs), max((s.max_length for s in seqs), default=0)],
        "item_cat": [len(spec.cardinalities("item"))],
        "item_num": [len(spec.numeric_names("item"))],
        "context_cat": [len(spec.cardinalities("context"))],
        "context_num": [len(spec.numeric_names("context"))],
    }
    declared = {
        t.name: t.shape[1:]
        for g in (manifest.graphs.user, manifest.graphs.candidates)
        for t in g.inputs
    }
    for name, width in widths.items():
        if int(np.prod(width)) == 0:
            if name in declared:
                raise ValueError(
                    f"graph input {name} is declared but the feature spec has no such columns"
                )
            continue
        if name not in declared:
            raise ValueError(
                f"the feature spec has {name} columns {width} but no graph takes {name}"
            )
        fixed = [d for d in declared[name] if isinstance(d, int)]
        if fixed and fixed != width[: len(fixed)]:
            raise ValueError(
                f"graph input {name} has widths {declared[name]}, the feature spec gives {width}"
            )


class ModelRegistry:
    """Holds what this process serves: one :class:`Routing` (serving version, optional candidate).

    ``build`` validates and warms a version without changing anything; ``install`` swaps the one
    routing reference. Which versions to build and install is decided by the fleet controller
    (``service.fleet.controller``); ``load`` is the one-process shortcut (build, then serve it).
    """

    def __init__(
        self,
        store: ModelStore,
        model: str | None,
        *,
        ort_threads: int = 1,
        pause: Callable[[], None] = _no_pause,
    ) -> None:
        self.store = store
        self.model = model  # None until the store holds a model to serve (see bind)
        self.ort_threads = ort_threads
        self.pause = pause  # called between load steps (the loader yields the CPU there)
        self._routing = Routing()
        self._lock = threading.Lock()  # one build at a time; readers never wait

    @property
    def routing(self) -> Routing:
        return self._routing

    @property
    def active(self) -> LoadedModel | None:
        return self._routing.serving

    @property
    def ready(self) -> bool:
        return self._routing.serving is not None

    def bind(self, model: str) -> None:
        """Name the model to serve (once the store holds one)."""
        if self.model is not None and self.model != model:
            raise ValueError(f"this registry serves {self.model!r}, not {model!r}")
        self.model = model

    def install(self, routing: Routing) -> Routing:
        """The swap: one reference assignment; returns the routing it replaced."""
        previous, self._routing = self._routing, routing
        return previous

    def close(self) -> None:
        """Release every version (their onnxruntime sessions close once no request holds them)."""
        self._routing = Routing()

    def load(self, version: str | None = None) -> LoadedModel:
        """Validate, warm up and serve ``version`` (None: current or newest); keeps the candidate."""
        loaded = self.build(version)
        self.install(replace(self._routing, serving=loaded))
        logger.info("serving %s/%s", loaded.name, loaded.version)
        return loaded

    def build(self, version: str | None = None) -> LoadedModel:
        """Locate, verify, open and warm up ``version``; raises ``ModelLoadError`` naming the step."""
        with self._lock:
            return self._build(version)

    def with_fusion(self, model: LoadedModel, fusion: FusionConfig) -> LoadedModel:
        """``model`` with its presets replaced by ``fusion``, validated and checked on warm-up."""
        with self._step("fusion", model.version):
            fusion.validate_objectives(model.objectives)
        replaced = replace(model, fusion=fusion)
        self._warm_up(replaced)
        return replaced

    @contextmanager
    def _step(self, name: str, version: str) -> Iterator[None]:
        try:
            yield
        except (ModelLoadError, KeyboardInterrupt):
            raise
        except Exception as exc:  # any failure of a step: report it, keep serving
            serving = self._routing.serving
            raise LoadStepError(
                f"loading {self.model}/{version} failed at step '{name}': {exc} "
                f"(still serving {serving.version if serving else 'nothing'})",
                step=name,
                version=version,
            ) from exc
        finally:
            self.pause()

    def _model(self) -> str:
        if self.model is None:
            raise ModelLoadError(f"no model to serve in {self.store.root}")
        return self.model

    def _resolve(self, version: str | None) -> str:
        if version is not None:
            return version
        model = self._model()
        current = self.store.current(model)
        if current is not None:
            return current
        versions = self.store.versions(model)
        if not versions:
            raise ValueError(f"no published version of {model!r} in {self.store.root}")
        return versions[-1]

    def _build(self, version: str | None) -> LoadedModel:
        model_name = self._model()
        with self._step("locate", version or "current"):
            version = self._resolve(version)
        with self._step("checksums", version):
            manifest = self.store.verify(model_name, version)
        folder = self.store.version_dir(model_name, version)
        with self._step("manifest", version):
            spec = manifest.feature_spec
            assembler = FeatureAssembler(spec)
            _check_widths(manifest, spec)
        with self._step("fusion", version):
            fusion = FusionConfig.load(folder / FUSION_FILE)
            fusion.validate_objectives(manifest.objective_ids())
            if fusion.default != manifest.fusion_default:
                raise ValueError(
                    f"{FUSION_FILE} default {fusion.default!r} differs from the manifest's "
                    f"fusion_default {manifest.fusion_default!r}"
                )
        with self._step("sessions", version):
            sessions = SplitSessions(folder, manifest.graphs, threads=self.ort_threads)
        loaded = LoadedModel(
            name=model_name,
            version=version,
            manifest=manifest,
            spec=spec,
            fusion=fusion,
            assembler=assembler,
            sessions=sessions,
            loaded_at=datetime.now(UTC),
        )
        self._warm_up(loaded)
        return loaded

    def _warm_up(self, model: LoadedModel) -> None:
        if not model.manifest.warmup:
            logger.warning(
                "%s/%s has no warm-up examples; first requests will be slower",
                model.name,
                model.version,
            )
        for k, example in enumerate(model.manifest.warmup):
            with self._step("warmup", model.version):
                request = example_input(example)
                n = len(request.candidate_ids)
                user = model.assembler.user_arrays(request.user_features, None)
                rep = model.sessions.user_rep(user)
                arrays = model.assembler.candidate_arrays(request, [None] * n)
                scores = model.objective_scores(rep, arrays, n)
            with self._step("sanity", model.version):
                try:
                    model.check_outputs(scores)
                    for preset in model.fusion.presets.values():
                        fuse(preset, scores)
                except (ValueError, RankError) as exc:
                    raise ValueError(f"warm-up example {k}: {exc}") from exc
