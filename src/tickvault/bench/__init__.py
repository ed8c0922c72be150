"""The ``tickvault bench`` benchmarks, each on its own store, beside the original
per-tick design, and the tables the CLI prints from their results (``tables``).

May import everything below the CLI. The original-design baselines use valkey-py
directly, on purpose: they measure that design.
"""
