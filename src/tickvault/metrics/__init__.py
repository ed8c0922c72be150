"""Reserved for metrics: counters and latency histograms that the live processes and the
dashboard export (Prometheus conventions: base units in names, ``_total`` counters).

May import: records, venue, errors, timeutil, config.
"""
