"""Which version scores a request: the serving one, a canary for a stable share of users, and
which requests a shadow version scores again off the response path.

A :class:`Routing` is immutable and read once per request, so a request is scored by exactly one
version even while the fleet controller swaps in a new routing. The canary side of a user is a
keyed BLAKE2b hash of the user id (keyed by the canary version), so a user stays on one side for
the life of a canary, and raising the percent only adds users. Requests without a user id go to
the serving version. Shadow sampling is per request (uniform).
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from service.scoring.registry import LoadedModel

Role = Literal["serving", "canary", "shadow"]
SHARE_SCALE = 10_000  # shares are kept in 1/10,000 (0.01 percent steps)


def share_of(percent: float) -> int:
    """A percent (0, 100] as parts of :data:`SHARE_SCALE`."""
    return max(0, min(SHARE_SCALE, round(percent * SHARE_SCALE / 100)))


def user_bucket(user_id: str, salt: bytes) -> int:
    """The user's stable bucket in ``[0, SHARE_SCALE)`` for this salt (the canary version)."""
    digest = hashlib.blake2b(user_id.encode(), digest_size=8, key=salt).digest()
    return int.from_bytes(digest, "little") % SHARE_SCALE


@dataclass(frozen=True, slots=True)
class Routing:
    """The versions this process serves and how requests are split between them."""

    serving: LoadedModel | None = None
    candidate: LoadedModel | None = None
    mode: Literal["canary", "shadow"] | None = None
    share: int = 0  # parts of SHARE_SCALE
    _salt: bytes = field(default=b"", repr=False)

    @classmethod
    def with_candidate(
        cls,
        serving: LoadedModel | None,
        candidate: LoadedModel | None,
        mode: Literal["canary", "shadow"] | None,
        percent: float,
    ) -> Routing:
        if candidate is None or mode is None:
            return cls(serving)
        salt = candidate.version.encode()[:64]  # BLAKE2b keys are at most 64 bytes
        return cls(serving, candidate, mode, share_of(percent), salt)

    def pick(self, user_id: str | None) -> tuple[LoadedModel | None, Role]:
        """The version that scores this user's request."""
        if (
            self.mode == "canary"
            and user_id is not None
            and self.candidate is not None
            and user_bucket(user_id, self._salt) < self.share
        ):
            return self.candidate, "canary"
        return self.serving, "serving"

    def shadow(self) -> LoadedModel | None:
        """The shadow version when this request is sampled for shadow scoring, else None."""
        if self.mode != "shadow" or self.candidate is None:
            return None
        return self.candidate if random.randrange(SHARE_SCALE) < self.share else None

    def versions(self) -> list[str]:
        """Resident versions, serving first."""
        return [m.version for m in (self.serving, self.candidate) if m is not None]
