"""Stable hashing of categorical ids: 64-bit FNV-1a over UTF-8 bytes, vectorized with numpy.

Hash-encoded features (``encoding: hash``) must map an id to the same bucket in the training process,
in every serving process and on every Python version, so Python's salted ``hash()`` is out. FNV-1a
(Fowler, Noll, Vo; http://www.isthe.com/chongo/tech/comp/fnv/) is tiny, well known and has published
test vectors. The loop runs over byte positions (at most the longest id), never over rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

FNV_OFFSET_BASIS = np.uint64(0xCBF29CE484222325)
FNV_PRIME = np.uint64(0x100000001B3)


def _utf8(values: Sequence[str] | npt.NDArray[np.generic]) -> npt.NDArray[np.bytes_]:
    """The ids as a numpy bytes array (UTF-8; lone surrogates pass through as their 3-byte form)."""
    array = values if isinstance(values, np.ndarray) else np.fromiter(values, dtype=object)
    if array.dtype.kind == "O":
        kinds = set(map(type, array.ravel().tolist()))
        if not all(issubclass(k, str) for k in kinds):
            names = sorted(k.__name__ for k in kinds)
            raise TypeError(f"stable_hash takes strings, got elements of types {names}")
        array = array.astype(str)
    if array.dtype.kind == "S":
        return array.astype(np.bytes_, copy=False)
    if array.dtype.kind != "U":
        raise TypeError(
            f"stable_hash takes strings, got an array of dtype {array.dtype}: "
            "convert the ids to canonical strings first"
        )
    encoded: npt.NDArray[np.bytes_] = np.strings.encode(
        array.astype(np.str_, copy=False), "utf-8", "surrogatepass"
    )
    return encoded


def stable_hash(values: Sequence[str] | npt.NDArray[np.generic]) -> npt.NDArray[np.uint64]:
    """FNV-1a 64 of each string's UTF-8 bytes, with the shape of ``values``.

    ``values`` holds ``str`` (a list, or a numpy ``str``/object array) or already-encoded ``bytes``
    (a numpy ``S`` array). Numpy string arrays cannot hold trailing NUL characters, so an id's
    trailing ``"\\x00"`` is not part of its hash; anything else hashes exactly as the reference
    FNV-1a (``stable_hash([""])`` is the offset basis ``0xcbf29ce484222325``).
    """
    data = _utf8(values)
    shape = data.shape
    flat = np.ascontiguousarray(data.reshape(-1))
    n = flat.shape[0]
    hashes = np.full(n, FNV_OFFSET_BASIS, dtype=np.uint64)
    width = flat.dtype.itemsize
    if n == 0 or width == 0:
        return hashes.reshape(shape)
    lengths = np.strings.str_len(flat)
    octets = flat.view(np.uint8).reshape(n, width)
    for position in range(int(lengths.max())):
        mixed = (hashes ^ octets[:, position].astype(np.uint64)) * FNV_PRIME  # wraps mod 2**64
        hashes = np.where(lengths > position, mixed, hashes)
    return hashes.reshape(shape)
