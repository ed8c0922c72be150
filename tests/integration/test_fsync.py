"""The embedded server's AOF fsync mode (``valkey_appendfsync``) and what it costs
(``tickvault bench live --fsync``), on real servers."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from rich.table import Table

from tests.integration.test_bench import bench_tmp  # noqa: F401 (a fixture)
from tickvault import Vault
from tickvault.bench import tables
from tickvault.cli.main import cli


def test_the_embedded_server_starts_with_the_configured_fsync_mode_and_a_running_one_takes_it(
    own_data_dir: Path,
) -> None:
    with Vault.open(data_dir=own_data_dir, valkey_appendfsync="always") as first:
        assert first.server_status()["appendfsync"] == "always"
        with Vault.open(data_dir=own_data_dir) as second:  # the default, everysec
            assert second.server_status()["appendfsync"] == "everysec"
            assert first.server_status()["appendfsync"] == "everysec"  # one server


def test_bench_live_fsync_measures_everysec_and_always_in_one_run_and_restores_the_mode(
    own_data_dir: Path,
    bench_tmp: Path,  # noqa: F811
) -> None:
    with Vault.open(data_dir=own_data_dir, embedded_idle_stop_s=0) as vault:
        url = vault.url
        before = vault.server_status()["appendfsync"]
        result = CliRunner().invoke(
            cli, ["bench", "--url", url, "live", "--trades", "2000", "--rate", "5000",
                  "--fsync", "everysec,always", "--json"],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        out = json.loads(result.stdout)
        assert [row["appendfsync"] for row in out["fsync"]] == ["everysec", "always"]
        for row in out["fsync"]:
            assert row["lost"] == 0 and row["duplicated"] == 0, row
            assert row["trades_per_s"] > 0 and row["aof"] is True
        assert vault.server_status()["appendfsync"] == before
    table = tables.live_table(out, 5000, 2000)[-1]
    assert isinstance(table, Table) and table.row_count == 2
