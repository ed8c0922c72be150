# valkey-py's client module has no annotations: calls into it are untyped.
# mypy: disable-error-code="no-untyped-call"
"""The store's Lua scripts (``lua_source``) and the single-server client
(``StoreClient``), whose pipelines send script calls without valkey-py's round trip
per execution (``ScriptPipeline``). The cluster's equivalent is
``storage.cluster.ScriptingPipeline``."""

from __future__ import annotations

from importlib import resources
from typing import Any

import valkey
from valkey.client import Pipeline
from valkey.exceptions import NoScriptError

BLOCK_APPEND = "block_append.lua"
"""The functions every script that appends trade blocks shares (ids, watermark, late
index): put before the script's own text."""


def lua_source(name: str, *, block_append: bool = False) -> str:
    """The text of the store's Lua script ``name`` (in ``tickvault/storage``); with
    ``block_append``, after the shared ``BLOCK_APPEND`` functions."""
    files = resources.files("tickvault.storage")
    text = files.joinpath(name).read_text()
    return files.joinpath(BLOCK_APPEND).read_text() + text if block_append else text


class ScriptPipeline(Pipeline):
    """valkey-py's pipeline without its round trip per execution for scripts.

    valkey-py sends ``SCRIPT EXISTS`` (and ``SCRIPT LOAD`` for those missing) before every
    pipeline that holds script calls: one extra round trip per bridge write cycle, about a
    third of a cycle's time at 50k trades/s (profiled with ``bench live``). Here a
    pipeline without MULTI sends its ``EVALSHA`` calls at once; the calls a server answers
    NOSCRIPT (a restarted server, a ``SCRIPT FLUSH``) did not run, so their scripts are
    loaded and exactly those calls sent again, in their order: each script call is atomic
    on its own, and nothing runs twice. A transaction (MULTI/EXEC) still loads its
    scripts first: a NOSCRIPT inside it would break its all-or-nothing."""

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        multi = bool(getattr(self, "transaction", False)) or self.explicit_transaction
        if multi or not self.scripts or self.watching:
            return list(super().execute(raise_on_error))
        scripts, self.scripts = self.scripts, set()
        stack = list(self.command_stack)
        replies = list(super().execute(raise_on_error=False))
        missing = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)
                   and str(stack[i][0][0]).upper() == "EVALSHA"]  # fmt: skip
        if missing:
            texts = {s.sha: s.script for s in scripts}  # only now: a cycle's rare path
            for sha in {str(stack[i][0][1]) for i in missing}:
                if sha in texts:
                    self.immediate_execute_command("SCRIPT LOAD", texts[sha])
            again: Any = Pipeline(self.connection_pool, self.response_callbacks, False, None)
            for i in missing:
                args, options = stack[i]
                again.execute_command(*args, **options)
            for i, reply in zip(missing, again.execute(raise_on_error=False), strict=True):
                replies[i] = reply
        if raise_on_error:
            self.raise_first_error(stack, replies)
        return replies


class StoreClient(valkey.Valkey):
    """The single-server client of the store: pipelines are ``ScriptPipeline``."""

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Pipeline:
        return ScriptPipeline(self.connection_pool, self.response_callbacks, transaction,
                              shard_hint)  # fmt: skip
