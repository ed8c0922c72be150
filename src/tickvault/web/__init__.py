"""Reserved for the web dashboard: an app factory and one router per area.

May import everything below the CLI: the store (``tickvault.vault``), transport (to
subscribe to ZeroMQ), records, venue, features, errors, timeutil, config.
"""
