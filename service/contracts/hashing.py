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


_DIGIT_BASE = np.uint64(ord("0"))
_TEN = np.uint64(10)
_POWERS_OF_TEN = [np.uint64(10**k) for k in range(20)]  # 10**19 < 2**64 < 10**20
# The hash of "-": where a negative number's digits start.
_MINUS_HASH = np.uint64(((int(FNV_OFFSET_BASIS) ^ ord("-")) * int(FNV_PRIME)) % 2**64)


_FEW = 32
"""Up to this many integers are hashed in plain Python rather than with numpy's digit loop, whose
cost is mostly per call: 1 id 17.4 -> 1.5 us, 30 ids 12.9 -> 9.8 us; 64 ids 13.3 -> 19.9 us, so
numpy's loop takes over past 32 (one row's ids, the user side of every /rank request, are few)."""
_OFFSET = int(FNV_OFFSET_BASIS)
_PRIME = int(FNV_PRIME)
_MASK = 2**64 - 1


def _fnv1a_decimal(value: int) -> int:
    """FNV-1a 64 of ``str(value)``'s bytes (ASCII digits and an optional minus sign)."""
    hashed = _OFFSET
    for octet in b"%d" % value:
        hashed = ((hashed ^ octet) * _PRIME) & _MASK
    return hashed


def stable_hash_integers(values: npt.NDArray[np.integer]) -> npt.NDArray[np.uint64]:
    """``stable_hash`` of each integer's decimal string, computed on the digits without strings.

    Equal to ``stable_hash(values.astype(str))`` for every int64 and uint64 (an integer id's
    canonical string is its decimal form), several times faster: no string conversion, no UTF-8
    encoding, and a loop over at most 20 digit positions instead of byte positions.
    """
    array = np.asarray(values)
    if array.dtype.kind not in "iu":
        raise TypeError(f"stable_hash_integers takes an integer array, got dtype {array.dtype}")
    flat = array.reshape(-1)
    if flat.shape[0] <= _FEW:  # a user's id or short history: numpy's per-call cost dominates
        return np.array(list(map(_fnv1a_decimal, flat.tolist())), dtype=np.uint64).reshape(
            array.shape
        )
    if array.dtype.kind == "i":
        signed = flat.astype(np.int64, copy=False)
        negative = signed < 0
        # |x| as uint64, exact for int64's minimum too: two's complement negation wraps correctly
        magnitude = signed.view(np.uint64).copy()
        np.negative(magnitude, out=magnitude, where=negative)
        hashes = np.where(negative, _MINUS_HASH, FNV_OFFSET_BASIS)
    else:
        magnitude = flat.astype(np.uint64, copy=False)
        hashes = np.full(flat.shape[0], FNV_OFFSET_BASIS, dtype=np.uint64)
    if flat.shape[0] == 0:
        return hashes.reshape(array.shape)
    digit = np.empty_like(magnitude)
    for position in range(len(str(int(magnitude.max()))) - 1, -1, -1):  # most significant first
        power = _POWERS_OF_TEN[position]
        np.floor_divide(magnitude, power, out=digit)
        digit %= _TEN
        digit += _DIGIT_BASE
        digit ^= hashes
        digit *= FNV_PRIME  # wraps mod 2**64, as FNV-1a does
        if position == 0:  # every number has a units digit ("0" for zero)
            hashes, digit = digit, hashes
        else:  # only numbers of more than ``position`` digits have this one
            np.copyto(hashes, digit, where=magnitude >= power)
    return hashes.reshape(array.shape)
