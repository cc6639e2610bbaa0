"""The model store docker/smoke.sh mounts into the rankers: the committed one plus a version to swap to.

The committed store has one version of ``demo``, so an admin load of it on a stack already serving it
changes nothing a probe could see. This copies ``models_store/<model>`` into ``OUT`` unchanged (its
``current`` pointer still names the committed version) and publishes a second version through the
service's own ``ModelStore.publish`` (the same files under a fresh version name, checksummed again), under
``umask 077``: the rankers run as uid 10001, so they can only load it if publishing makes what it writes
readable by everyone, as ``docker/README.md`` promises.

    python docker/smoke/store.py --repo . --out DIR [--model demo]
    # prints SERVING_VERSION=... and SWAP_VERSION=... for the shell
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

from service.contracts.manifest import MANIFEST_FILE, Manifest
from service.model_store import ModelStore

STRICT_UMASK = 0o077


def second_version(store: ModelStore, model: str, source: str) -> str:
    """Publish a copy of ``model``/``source`` under a new version name; returns that name."""
    manifest = store.verify(model, source)
    folder = store.version_dir(model, source)

    def write(staging: Path, version: str) -> Manifest:
        for path in folder.rglob("*"):
            target = staging / path.relative_to(folder)
            if path.is_dir():
                target.mkdir(parents=True, exist_ok=True)
            elif path.name != MANIFEST_FILE:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)  # contents only: modes come from the umask
        return manifest.model_copy(update={"version": version, "files": {}})

    previous = os.umask(STRICT_UMASK)
    try:
        return store.publish(model, write)
    finally:
        os.umask(previous)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="an empty or absent folder")
    parser.add_argument("--model", default="demo")
    args = parser.parse_args()
    shutil.copytree(args.repo / "models_store" / args.model, args.out / args.model)
    store = ModelStore(args.out)
    serving = store.current(args.model)
    if serving is None:
        raise SystemExit(f"{args.out / args.model} has no current pointer")
    swap = second_version(store, args.model, serving)
    unreadable = [
        str(p.relative_to(args.out))
        for p in (args.out / args.model / swap).rglob("*")
        if not p.stat().st_mode & 0o004
    ]
    if unreadable:
        raise SystemExit(f"published under umask 077, not readable by other users: {unreadable}")
    print(f"SERVING_VERSION={serving}")
    print(f"SWAP_VERSION={swap}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
