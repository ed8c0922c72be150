"""The feature engine's pure core: intraday features live and in batch, history features
from per-session aggregates, knowledge time and labels. No I/O: this package imports only
the trade records, venue facts (``tickvault.venue``) and time utilities.

See docs/features.md for every definition, its units and its edge cases.
"""

from tickvault.features.aggregates import SessionAggregates, build_session_aggregates
from tickvault.features.base import Feature
from tickvault.features.batch import BookTops
from tickvault.features.featureset import FeatureSet
from tickvault.features.history import HISTORY_FEATURES, HistoryParams, history_features
from tickvault.features.intraday import default_features
from tickvault.features.known import DEFAULT_FEED_LATENCY_NS, as_known_at, knowledge_time
from tickvault.features.labels import forward_return_labels, is_label, label_name
from tickvault.features.live import IntradayState
from tickvault.features.pointintime import history_at, intraday_at
from tickvault.features.user import UserFeature, trades_frame

__all__ = [
    "DEFAULT_FEED_LATENCY_NS",
    "HISTORY_FEATURES",
    "BookTops",
    "Feature",
    "FeatureSet",
    "HistoryParams",
    "IntradayState",
    "SessionAggregates",
    "UserFeature",
    "as_known_at",
    "build_session_aggregates",
    "default_features",
    "forward_return_labels",
    "history_at",
    "history_features",
    "intraday_at",
    "is_label",
    "knowledge_time",
    "label_name",
    "trades_frame",
]
