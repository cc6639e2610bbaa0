"""Model store: atomic publish, distinct versions, checksums, current pointer, safe paths."""

from __future__ import annotations

import json
import multiprocessing
import os
import stat
import threading
from pathlib import Path

import pytest

from service.contracts.manifest import Manifest
from service.model_store import (
    ChecksumError,
    ModelStore,
    ModelStoreError,
    VersionNotFoundError,
)
from tests.service.contracts.test_manifest import manifest_dict


def write_version(staging: Path, version: str) -> Manifest:
    (staging / "user.onnx").write_bytes(b"user-graph")
    (staging / "candidates.onnx").write_bytes(b"candidate-graph")
    (staging / "plots").mkdir()
    (staging / "plots" / "loss_curves.png").write_bytes(b"png")
    return Manifest.model_validate(manifest_dict(version=version, files={}))


def tree(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


def test_publish_writes_manifest_with_checksums_of_every_file(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    version = store.publish("sim", write_version)
    manifest = store.verify("sim", version)
    assert manifest.version == version
    assert sorted(manifest.files) == ["candidates.onnx", "plots/loss_curves.png", "user.onnx"]
    assert store.versions("sim") == [version]
    assert store.models() == ["sim"]


def test_failure_while_writing_leaves_no_half_version(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    first = store.publish("sim", write_version)
    before = tree(tmp_path)

    def crash_midway(staging: Path, version: str) -> Manifest:
        (staging / "user.onnx").write_bytes(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        store.publish("sim", crash_midway)
    assert tree(tmp_path) == before
    assert store.versions("sim") == [first]


def test_writer_that_skips_a_graph_file_publishes_nothing(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)

    def no_candidates(staging: Path, version: str) -> Manifest:
        (staging / "user.onnx").write_bytes(b"user")
        return Manifest.model_validate(manifest_dict(version=version, files={}))

    with pytest.raises(ModelStoreError, match=r"candidates\.onnx"):
        store.publish("sim", no_candidates)
    assert store.versions("sim") == []
    assert tree(tmp_path) == ["sim"]


def test_concurrent_publishes_get_distinct_versions(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    results: list[str] = []
    lock = threading.Lock()

    def publish() -> None:
        version = store.publish("sim", write_version)
        with lock:
            results.append(version)

    threads = [threading.Thread(target=publish) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 8
    assert store.versions("sim") == sorted(results)
    for version in results:
        assert store.verify("sim", version).version == version


def _publish_in_process(root: str) -> str:
    return ModelStore(Path(root)).publish("sim", write_version)


def test_concurrent_publishes_from_processes_get_distinct_versions(tmp_path: Path) -> None:
    with multiprocessing.get_context("fork").Pool(4) as pool:
        versions = pool.map(_publish_in_process, [str(tmp_path)] * 8)
    assert len(set(versions)) == 8
    assert ModelStore(tmp_path).versions("sim") == sorted(versions)


def test_corrupted_file_is_caught_and_named(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    version = store.publish("sim", write_version)
    (tmp_path / "sim" / version / "candidates.onnx").write_bytes(b"tampered")
    with pytest.raises(ChecksumError, match=r"candidates\.onnx: sha256") as info:
        store.verify("sim", version)
    assert list(info.value.problems) == ["candidates.onnx"]


def test_missing_and_unlisted_files_are_caught(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    version = store.publish("sim", write_version)
    folder = tmp_path / "sim" / version
    (folder / "plots" / "loss_curves.png").unlink()
    (folder / "extra.bin").write_bytes(b"?")
    with pytest.raises(ChecksumError) as info:
        store.verify("sim", version)
    assert info.value.problems == {
        "plots/loss_curves.png": "missing",
        "extra.bin": "not listed in the manifest",
    }


def test_set_current_switches_pointer_and_refuses_unknown_versions(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    assert store.current("sim") is None
    first = store.publish("sim", write_version)
    second = store.publish("sim", write_version)
    store.set_current("sim", first)
    assert store.current("sim") == first
    store.set_current("sim", second)
    assert store.current("sim") == second
    with pytest.raises(VersionNotFoundError, match="no version 'nope'"):
        store.set_current("sim", "nope")
    assert store.current("sim") == second
    assert not [p for p in (tmp_path / "sim").iterdir() if p.name.startswith(".tmp-")]


def test_set_current_refuses_a_corrupt_version(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    good = store.publish("sim", write_version)
    bad = store.publish("sim", write_version)
    store.set_current("sim", good)
    (tmp_path / "sim" / bad / "user.onnx").write_bytes(b"x")
    with pytest.raises(ChecksumError, match=r"user\.onnx"):
        store.set_current("sim", bad)
    assert store.current("sim") == good


@pytest.mark.parametrize("name", ["..", "../other", "a/b", "/etc", ".tmp-x", "current"])
def test_path_traversal_names_are_rejected(tmp_path: Path, name: str) -> None:
    store = ModelStore(tmp_path / "store")
    with pytest.raises(ValueError, match=r"invalid|reserved"):
        store.version_dir("sim", name)
    if name != "current":
        with pytest.raises(ValueError, match="invalid"):
            store.publish(name, write_version)
    assert not (tmp_path / "store").exists()


def test_manifest_of_a_renamed_folder_is_refused(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    version = store.publish("sim", write_version)
    (tmp_path / "sim" / version).rename(tmp_path / "sim" / "copied")
    with pytest.raises(ModelStoreError, match="renamed or copied"):
        store.read_manifest("sim", "copied")


def test_staging_folders_are_not_listed(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    version = store.publish("sim", write_version)
    staging = tmp_path / "sim" / ".tmp-leftover"
    staging.mkdir()
    (staging / "manifest.json").write_text(json.dumps({}))
    assert store.versions("sim") == [version]


def test_a_store_published_under_a_strict_umask_is_readable_by_other_users(
    tmp_path: Path,
) -> None:
    # the service often runs as another user (uid 10001 in the Docker image) on a read-only mount
    previous = os.umask(0o077)
    try:
        store = ModelStore(tmp_path / "store")
        version = store.publish("sim", write_version)
        store.set_current("sim", version)
    finally:
        os.umask(previous)
    for path in [tmp_path / "store", *(tmp_path / "store").rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        wanted = 0o555 if path.is_dir() else 0o444
        assert mode & wanted == wanted, f"{path} has mode {oct(mode)}"
