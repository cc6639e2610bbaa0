"""The model store on disk: ``<root>/<model>/<version>/`` folders and a ``current`` pointer per model.

Layout (Triton-style repository)::

    <root>/<model>/current                 one line: the current version name (replaced atomically)
    <root>/<model>/<version>/manifest.json  contract 2, with the sha256 of every other file
    <root>/<model>/<version>/user.onnx, candidates.onnx, fusion.yaml, metrics.json, plots/*.png
    <root>/<model>/.tmp-<uuid>/             a publish in progress (never listed, never loaded)

Versions are never overwritten: a publish fills a staging folder, fsyncs it and renames it to a fresh
version name, so a crash leaves no half version. Paths are built only from validated names. No torch.
What a publish writes is readable by every user whatever the umask (the service often runs as another
user, e.g. uid 10001 in the Docker image, reading the store through a read-only mount).
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import shutil
import stat
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from service.contracts.manifest import MANIFEST_FILE, Manifest, load_manifest, validate_name

logger = logging.getLogger(__name__)

CURRENT_FILE = "current"
STAGING_PREFIX = ".tmp-"
_RENAME_ATTEMPTS = 5


class ModelStoreError(Exception):
    """Base class of model store failures."""


class VersionNotFoundError(ModelStoreError):
    pass


class ChecksumError(ModelStoreError):
    """A version's files do not match its manifest; ``problems`` maps each file to what is wrong."""

    def __init__(self, model: str, version: str, problems: dict[str, str]) -> None:
        self.problems = problems
        listed = "; ".join(f"{name}: {what}" for name, what in sorted(problems.items()))
        super().__init__(
            f"{model}/{version} failed verification ({listed}); republish the version or restore its files"
        )


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def new_version_name(now: datetime | None = None) -> str:
    """A fresh version name that sorts chronologically, e.g. ``20250102T030405.678Z-9f3a1c``."""
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%S}.{now.microsecond // 1000:03d}Z-{secrets.token_hex(3)}"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            with open(os.path.join(dirpath, name), "rb") as handle:
                os.fsync(handle.fileno())
        _fsync_dir(Path(dirpath))


def _make_readable(path: Path) -> None:
    """Add read permission (and search permission on folders) for everybody; remove nothing."""
    extra = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH
    if path.is_dir():
        extra |= stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH
    mode = path.stat().st_mode
    if mode & extra != extra:
        os.chmod(path, stat.S_IMODE(mode) | extra)


def _make_tree_readable(root: Path) -> None:
    _make_readable(root)
    for path in root.rglob("*"):
        _make_readable(path)


def _relative_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


# Called with (staging folder, version name); writes the version's files there and returns the
# manifest without checksums (the store fills ``files``).
VersionWriter = Callable[[Path, str], Manifest]


class ModelStore:
    """Reads, verifies and publishes model versions under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def model_dir(self, model: str) -> Path:
        return self.root / validate_name(model, "model name")

    def version_dir(self, model: str, version: str) -> Path:
        if version == CURRENT_FILE:
            raise ValueError(
                f"{CURRENT_FILE!r} is reserved for the pointer file, not a version name"
            )
        return self.model_dir(model) / validate_name(version, "version")

    def models(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(
            p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")
        )

    def versions(self, model: str) -> list[str]:
        """Published versions of ``model``, oldest first (generated names sort by time)."""
        model_dir = self.model_dir(model)
        if not model_dir.is_dir():
            return []
        return sorted(
            p.name
            for p in model_dir.iterdir()
            if p.is_dir() and not p.name.startswith(".") and (p / MANIFEST_FILE).is_file()
        )

    def _existing_version_dir(self, model: str, version: str) -> Path:
        path = self.version_dir(model, version)
        if not (path / MANIFEST_FILE).is_file():
            known = self.versions(model)
            raise VersionNotFoundError(
                f"model {model!r} has no version {version!r} in {self.root} (known: {known or 'none'})"
            )
        return path

    def read_manifest(self, model: str, version: str) -> Manifest:
        manifest = load_manifest(self._existing_version_dir(model, version) / MANIFEST_FILE)
        if manifest.model != model or manifest.version != version:
            raise ModelStoreError(
                f"{model}/{version}/{MANIFEST_FILE} describes {manifest.model}/{manifest.version}; "
                "the folder was renamed or copied by hand"
            )
        return manifest

    def verify(self, model: str, version: str) -> Manifest:
        """Recompute the sha256 of every file against the manifest; raise ChecksumError on mismatch."""
        manifest = self.read_manifest(model, version)
        path = self.version_dir(model, version)
        problems: dict[str, str] = {}
        for name in (manifest.graphs.user.file, manifest.graphs.candidates.file):
            if name not in manifest.files:
                problems[name] = "graph file has no checksum in the manifest"
        for name, expected in manifest.files.items():
            file = path / name
            if not file.is_file():
                problems[name] = "missing"
            elif (actual := sha256_file(file)) != expected:
                problems[name] = f"sha256 {actual[:12]}... != manifest {expected[:12]}..."
        for name in _relative_files(path):
            if name != MANIFEST_FILE and name not in manifest.files:
                problems[name] = "not listed in the manifest"
        if problems:
            raise ChecksumError(model, version, problems)
        return manifest

    def current(self, model: str) -> str | None:
        """The version the ``current`` pointer names, or None when it was never set."""
        pointer = self.model_dir(model) / CURRENT_FILE
        try:
            text = pointer.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        return validate_name(text, f"version in {pointer}")

    def set_current(self, model: str, version: str) -> None:
        """Point ``current`` at a verified version; readers see the old or the new name, never half."""
        self.verify(model, version)
        model_dir = self.model_dir(model)
        tmp = model_dir / f"{STAGING_PREFIX}current-{uuid.uuid4().hex}"
        try:
            with tmp.open("w", encoding="utf-8") as handle:
                handle.write(version + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            _make_readable(tmp)
            os.replace(tmp, model_dir / CURRENT_FILE)
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(model_dir)
        logger.info("current version of %s is now %s", model, version)

    def publish(self, model: str, write: VersionWriter) -> str:
        """Publish a new version of ``model`` atomically and return its name.

        ``write`` fills the staging folder and returns the manifest; the store adds the checksums,
        writes ``manifest.json``, fsyncs and renames the folder into place. If anything fails the
        staging folder is removed and the store is unchanged.
        """
        model_dir = self.model_dir(model)
        model_dir.mkdir(parents=True, exist_ok=True)
        for folder in (self.root, model_dir):
            try:
                _make_readable(folder)
            except PermissionError:  # someone else's folder: its owner decides who reads it
                logger.warning(
                    "%s is not readable by other users; the service may not read it", folder
                )
        staging = model_dir / f"{STAGING_PREFIX}{uuid.uuid4().hex}"
        staging.mkdir()
        try:
            version = new_version_name()
            manifest = write(staging, version)
            if manifest.model != model or manifest.version != version:
                raise ModelStoreError(
                    f"writer returned a manifest for {manifest.model}/{manifest.version}, "
                    f"expected {model}/{version}"
                )
            for graph in (manifest.graphs.user, manifest.graphs.candidates):
                if not (staging / graph.file).is_file():
                    raise ModelStoreError(f"graph file {graph.file!r} was not written")
            files = {
                n: sha256_file(staging / n) for n in _relative_files(staging) if n != MANIFEST_FILE
            }
            for _attempt in range(_RENAME_ATTEMPTS):
                final = Manifest.model_validate(
                    {**manifest.model_dump(), "version": version, "files": files}
                )
                final.dump(staging / MANIFEST_FILE)
                _make_tree_readable(staging)
                _fsync_tree(staging)
                target = model_dir / version
                if not target.exists():
                    try:
                        os.rename(staging, target)  # fails on a non-empty target: never overwrites
                    except OSError:
                        if not target.exists():
                            raise
                    else:
                        _fsync_dir(model_dir)
                        logger.info("published %s/%s", model, version)
                        return version
                version = new_version_name()
            raise ModelStoreError(f"could not claim a fresh version name for {model!r}")
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
