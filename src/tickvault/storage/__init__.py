"""The store's parts under the ``Vault`` facade: block codec and planning, resolution
(pure), keys, writes, reads, retention, catalogue, markers, offer books, frames, the
Valkey connection (where valkey-py's errors are translated) and the embedded server.

May import: records, venue, errors, timeutil, config. Nothing of the transport or the
feeders (an import contract enforces it); only this package talks to Valkey.
"""
