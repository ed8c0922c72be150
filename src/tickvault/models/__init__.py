"""The pure ML core: labels, walk-forward splits, metrics, baselines, the evaluation
loop, the HTML report and the model registry on disk (docs/ml.md).

May import: records, venue, timeutil, errors, config. No Valkey, no ZeroMQ, not the
features package (frames come in as arrays: ``engine.training`` builds them). Model
workers that read the store or subscribe to ZeroMQ belong with the live processes
(``live``) and call into this package.
"""
