"""Where registrations live: the in-memory store (default) or a shared backend."""

from rendezvous.store.base import Client, Store, StoreStats
from rendezvous.store.memory import MemoryStore

__all__ = ["Client", "MemoryStore", "Store", "StoreStats"]
