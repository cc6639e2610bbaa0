"""stable_hash: FNV-1a 64 over UTF-8, identical to the published vectors and a scalar reference."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from service.contracts.hashing import stable_hash, stable_hash_integers


def fnv1a_64(text: str) -> int:
    """Scalar reference straight from the FNV specification."""
    value = 0xCBF29CE484222325
    for octet in text.encode("utf-8", "surrogatepass"):
        value = ((value ^ octet) * 0x100000001B3) % 2**64
    return value


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", 0xCBF29CE484222325),
        ("a", 0xAF63DC4C8601EC8C),
        ("foobar", 0x85944171F73967E8),
    ],
)
def test_matches_published_fnv1a_64_vectors(text: str, expected: int) -> None:
    assert int(stable_hash([text])[0]) == expected


def test_matches_scalar_reference_for_mixed_lengths_and_unicode() -> None:
    ids = ["", "a", "item_123", "42", "é", "日本語", "🙂 emoji", "x" * 300, "a b\tc", "\ud800"]
    expected = [fnv1a_64(t) for t in ids]
    assert stable_hash(ids).tolist() == expected
    assert stable_hash(np.array(ids, dtype=object)).tolist() == expected
    assert stable_hash(np.array(ids[:-1])).tolist() == expected[:-1]


def test_bytes_arrays_hash_like_their_utf8_text() -> None:
    ids = ["abc", "é", ""]
    encoded = np.array([t.encode() for t in ids], dtype="S")
    assert stable_hash(encoded).tolist() == stable_hash(ids).tolist()


def test_keeps_the_input_shape() -> None:
    grid = np.array([["a", "b", "c"], ["d", "", "f"]])
    hashes = stable_hash(grid)
    assert hashes.shape == (2, 3)
    assert hashes.dtype == np.uint64
    assert hashes[1, 1] == 0xCBF29CE484222325
    assert stable_hash([]).shape == (0,)


def test_same_value_in_another_python_process() -> None:
    code = "from service.contracts.hashing import stable_hash; print(int(stable_hash(['u42'])[0]))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        capture_output=True,
        text=True,
        env={"PYTHONHASHSEED": "123", "PATH": ""},
    )
    assert int(out.stdout) == fnv1a_64("u42") == int(stable_hash(["u42"])[0])


def test_rejects_non_string_ids() -> None:
    with pytest.raises(TypeError, match="canonical strings"):
        stable_hash(np.array([1, 2]))
    with pytest.raises(TypeError, match="int"):
        stable_hash([1, "a"])  # type: ignore[list-item]


def test_integer_hash_equals_the_hash_of_the_decimal_string() -> None:
    rng = np.random.default_rng(0)
    edges = [0, -1, 1, 9, 10, -10, 99, 100, 10**18, -(10**18), 2**63 - 1, -(2**63)]
    signed = np.concatenate(
        [np.array(edges), rng.integers(-(2**63), 2**63 - 1, 5000), rng.integers(-999, 999, 500)]
    )
    assert stable_hash_integers(signed).tolist() == stable_hash(signed.astype(str)).tolist()
    unsigned = np.array([0, 7, 10**19 - 1, 10**19, 2**63, 2**64 - 1], dtype=np.uint64)
    assert stable_hash_integers(unsigned).tolist() == [fnv1a_64(str(int(v))) for v in unsigned]
    grid = np.array([[1, 22], [333, -4]])
    assert stable_hash_integers(grid).tolist() == stable_hash(grid.astype(str)).tolist()
    assert stable_hash_integers(np.array([], dtype=np.int64)).shape == (0,)
    for few in (signed[:1], signed[:12], signed[-30:], unsigned, grid):  # the plain-Python path
        assert len(few.reshape(-1)) <= 32
        assert stable_hash_integers(few).tolist() == stable_hash(few.astype(str)).tolist()
        assert stable_hash_integers(few).dtype == np.uint64
    with pytest.raises(TypeError, match="integer array"):
        stable_hash_integers(np.array([1.0]))
