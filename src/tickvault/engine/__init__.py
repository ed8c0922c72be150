"""The feature engine's I/O side: point-in-time features and training frames over the
store (``FeatureEngine``), and the per-session aggregates materialised in Valkey
(``engine.aggregates``: ``AggregateStore``, ``refresh_aggregates`` for the live worker).

This layer sits between the Vault (below) and the live processes (above): it feeds the
pure feature code of ``tickvault.features`` with what the store held, and may import
the Vault, the storage layer and the pure packages, never the live or CLI layers.
"""

from tickvault.engine.aggregates import AggregateStore, MaterialisedSession, refresh_aggregates
from tickvault.engine.features import FeatureEngine

__all__ = ["AggregateStore", "FeatureEngine", "MaterialisedSession", "refresh_aggregates"]
