"""Redis URLs: a single server (``redis://``, ``rediss://``) or a Redis Cluster
(``redis+cluster://``, ``rediss+cluster://``, any node of the cluster as the host).

The scheme alone chooses redis-py's cluster client, so every place that takes ``MTRANK_REDIS_URL``
(the service, ``python -m service features load``) talks to a cluster without another setting.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import redis

CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
PLAIN_SCHEMES = {"redis", "rediss", "unix"}


def cluster_target(url: str) -> str | None:
    """The plain ``redis[s]://`` URL of a cluster URL's seed node; None for a single server.

    A cluster has one database: a ``/N`` other than ``/0`` is refused with a ``ValueError``."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in CLUSTER_SCHEMES:
        if scheme not in PLAIN_SCHEMES:
            known = sorted(PLAIN_SCHEMES | set(CLUSTER_SCHEMES))
            raise ValueError(f"Redis URL scheme {parts.scheme!r} is not one of {known}")
        return None
    db = parts.path.strip("/")
    if db not in ("", "0"):
        raise ValueError(
            f"Redis Cluster URL names database {db!r}: a cluster has only database 0; "
            "drop the /N or use a key prefix (MTRANK_REDIS_PREFIX) to separate tenants"
        )
    return urlunsplit((CLUSTER_SCHEMES[scheme], parts.netloc, "", parts.query, ""))


def is_cluster_url(url: str) -> bool:
    return cluster_target(url) is not None


def sync_client(
    url: str, *, socket_timeout: float, connect_timeout: float
) -> redis.Redis | redis.RedisCluster:
    """A blocking client for batch jobs (feature loading): cluster or single server by scheme."""
    target = cluster_target(url)
    if target is not None:
        return redis.RedisCluster.from_url(
            target, socket_timeout=socket_timeout, socket_connect_timeout=connect_timeout
        )
    return redis.Redis.from_url(
        url, socket_timeout=socket_timeout, socket_connect_timeout=connect_timeout
    )
