"""Where a server's work goes, by the shared object it runs in: the components ``server_time.py``
(perf samples) and ``rank_cpu.py --instructions`` (callgrind counts) report."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

LIBC = "libc (copies, malloc)"
KERNEL = "kernel (sockets, scheduling)"
COMPONENTS: list[tuple[str, str]] = [  # (component, pattern of the shared object's file name)
    ("onnxruntime (graphs)", r"onnxruntime"),
    ("Python interpreter", r"libpython|^python3"),
    (LIBC, r"^libc[.-]|^libm[.-]"),
    ("numpy", r"numpy|_multiarray|_umath"),
    ("mtrank C extension", r"_speedups"),
    ("JSON (orjson, msgspec)", r"orjson|msgspec|^_core\."),
    ("uvloop, httptools", r"^loop\.|^parser\.|url_parser|uvloop|httptools"),
    (KERNEL, r"kernel|vmlinux|\[vdso\]"),
]
OTHER = "other"
LABELS = [label for label, _ in COMPONENTS] + [OTHER]


def component(dso: str) -> str:
    """The component of a shared object (a path or a file name)."""
    name = dso.rsplit("/", 1)[-1]
    for label, pattern in COMPONENTS:
        if re.search(pattern, name):
            return label
    return OTHER


_NAMED = re.compile(r"^(c?)(ob|fl|fi|fe|fn)=(?:\((\d+)\))?\s*(.*)$")


def callgrind_by_component(path: Path) -> Counter[str]:
    """The instructions a callgrind output file counts in each component: every cost line's first
    event (Ir) under the shared object (``ob=``) of the function it belongs to, the inclusive cost
    of calls (the line after ``calls=``) left out, so each instruction counts once, where it ran."""
    objects: dict[str, str] = {}  # compressed id -> shared object
    counts: Counter[str] = Counter()
    current = OTHER
    positions = 1  # position columns before the events ("positions: line" by default)
    after_call = False
    for line in path.read_text(errors="replace").splitlines():
        if not line:
            continue
        if line.startswith("positions:"):
            positions = len(line.split()) - 1
            continue
        named = _NAMED.match(line)
        if named is not None:
            callee, kind, number, name = named.groups()
            if kind == "ob":
                if number is not None and name:
                    objects[number] = name
                dso = objects.get(number, name) if number is not None else name
                if not callee:
                    current = component(dso)
            continue
        if line.startswith("calls="):
            after_call = True
            continue
        if line[0].isdigit() or line[0] in "+-*":
            if after_call:  # the call's inclusive cost: counted where the callee ran
                after_call = False
                continue
            fields = line.split()
            if len(fields) > positions:
                counts[current] += int(fields[positions])
    return counts
