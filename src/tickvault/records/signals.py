"""Model signal records (pure)."""

from __future__ import annotations

import numpy as np

SIGNAL_DTYPE = np.dtype(
    [("ts_event", "<i8"), ("ts_source", "<i8"), ("value", "<f8"), ("model_id", "<i4")]
)
"""A model signal: when it was made, the ts_event of the tick it reacted to, its value."""
