"""The Market page's screenshot: ``market_screenshot`` (used by the browser tests, which
keep theirs in the test's tmp dir) and, run as a script, the README's docs/dashboard.png:

    .venv/bin/python -m tests.browser.screenshot [docs/dashboard.png]

seeds a private embedded store with simulated sessions, signals and paper fills, serves
the dashboard on 127.0.0.1 and photographs the Market page in headless Chromium.
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path
from typing import Any


def market_screenshot(page: Any, url: str, symbol: str, path: Path) -> Path:
    from playwright.sync_api import expect

    page.goto(f"{url}/market?symbol={symbol}")
    expect(page.locator("#status")).to_have_text(re.compile("^(live|as known at)"),
                                                 timeout=60_000)  # fmt: skip
    expect(page.locator("#metric-trades")).to_have_text(re.compile(r"^\d"), timeout=60_000)
    page.locator("#res-1m").click()
    page.wait_for_timeout(500)  # let the chart draw its frame (a picture, not a test)
    page.screenshot(path=str(path), full_page=True)
    return path


def main(argv: list[str]) -> int:
    from playwright.sync_api import sync_playwright

    from tests.browser.conftest import Served, chromium_path
    from tests.dashboard_seed import SYMBOL, seed
    from tickvault import Vault
    from tickvault.storage.server import stop_server

    out = Path(argv[0] if argv else "docs/dashboard.png")
    browser_path = chromium_path()
    if browser_path is None:
        print("no Chromium: run `make browser` first", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        vault = Vault.open(data_dir=tmp)
        try:
            seed(vault, sessions=3, per_day=6000, signals=14)
            served = Served(vault, Path(tmp))
            try:
                with sync_playwright() as p:
                    b = p.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
                    page = b.new_context(viewport={"width": 1400, "height": 860}).new_page()
                    market_screenshot(page, served.url, SYMBOL, out)
                    b.close()
            finally:
                served.close()
        finally:
            vault.close()
            stop_server(Path(tmp))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
