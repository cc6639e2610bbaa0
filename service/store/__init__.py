"""Online store: feature rows and the user-representation cache (Redis, or in memory for tests)."""

from service.store.memory import InMemoryFeatureStore, InMemoryUserRepCache
from service.store.ports import (
    CacheLookup,
    CacheResult,
    FeatureFetch,
    FeatureStore,
    FetchStatus,
    UserRepCache,
)
from service.store.redis_feature_store import RedisFeatureStore
from service.store.redis_user_cache import RedisUserRepCache, user_rep_cache_key

__all__ = [
    "CacheLookup",
    "CacheResult",
    "FeatureFetch",
    "FeatureStore",
    "FetchStatus",
    "InMemoryFeatureStore",
    "InMemoryUserRepCache",
    "RedisFeatureStore",
    "RedisUserRepCache",
    "UserRepCache",
    "user_rep_cache_key",
]
