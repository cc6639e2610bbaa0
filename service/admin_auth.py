"""Who may call the admin API: one check, used before any body is read and again by the router.

Every path under :data:`ADMIN_PREFIX` needs ``Authorization: Bearer <token>`` with the configured admin
token (``MTRANK_ADMIN_TOKEN`` or ``MTRANK_ADMIN_TOKEN_FILE``); without a configured token the admin API
is disabled. The front door (``service/front_door.py``) applies :func:`admin_refusal` to the request head,
so an unauthenticated body is never read or parsed; the admin router's ``require_admin`` dependency
applies it again and declares the bearer scheme in the OpenAPI document.
"""

from __future__ import annotations

import secrets

from fastapi.security.utils import get_authorization_scheme_param
from pydantic import SecretStr

from service.errors import Forbidden, RankError, Unauthorized

ADMIN_PREFIX = "/admin"


def is_admin_path(path: str) -> bool:
    return path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/")


def bearer_credentials(authorization: str | None) -> str | None:
    """The credentials of an ``Authorization: Bearer ...`` header (parsed as FastAPI's HTTPBearer
    does), ``None`` for a missing header or another scheme."""
    scheme, credentials = get_authorization_scheme_param(authorization)
    return credentials if scheme.lower() == "bearer" and credentials else None


def admin_refusal(expected: SecretStr | None, bearer: str | None) -> RankError | None:
    """The error to answer for bearer credentials ``bearer`` (``None`` if absent), or ``None`` if
    they are the admin token."""
    if expected is None:
        return Forbidden(
            "the admin API is disabled: set MTRANK_ADMIN_TOKEN or MTRANK_ADMIN_TOKEN_FILE to enable it"
        )
    given = (bearer or "").encode()
    if bearer is None or not secrets.compare_digest(given, expected.get_secret_value().encode()):
        return Unauthorized("missing or wrong bearer token: send Authorization: Bearer <token>")
    return None
