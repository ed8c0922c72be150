"""The pure ML core: labels, walk-forward splits, metrics, baselines, the evaluation
loop, the HTML report and the model registry on disk (docs/ml.md).

May import: records, venue, timeutil, errors, config, and the pure ``signals``
package and ``features`` names (``models.manager`` reads a row's regime with
``features.regime`` and the history feature names). No Valkey, no ZeroMQ; frames come in
as arrays (``engine.training`` builds them). Model
workers that read the store or subscribe to ZeroMQ belong with the live processes
(``live``) and call into this package.
"""
