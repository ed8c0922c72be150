"""Reserved for ML models: the model registry, model workers and their artifacts' metadata.

May import: records, venue, timeutil, errors, config, features, signals. Model workers
that read the store or subscribe to ZeroMQ belong with the live processes (``live``)
and call into this package.
"""
