"""The built-in market simulator: ``generator`` (pure, deterministic trades per seed) and
``feeder`` (``SimulatedFeeder``, which delivers them live-paced or as fast as possible)."""

from tickvault.feeds.sim.feeder import DEFAULT_SYMBOLS, SimulatedFeeder, default_start

__all__ = ["DEFAULT_SYMBOLS", "SimulatedFeeder", "default_start"]
