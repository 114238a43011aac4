"""Starts `modelgate --demo` on free loopback ports for the SDK tests."""

import os
import socket
import subprocess
import tempfile
import time
import urllib.request

import pytest

DEMO_KEY = "sk-modelgate-demo"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def gateway():
    binary = os.environ.get("MODELGATE_BIN", "target/debug/modelgate")
    port, metrics = _free_port(), _free_port()
    # Its log goes to a file: a pipe nobody reads fills up (64 KiB) and then blocks the
    # gateway's next log line, and with it the request that writes it.
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(
        [binary, "--demo", "--listen", f"127.0.0.1:{port}", "--metrics-listen", f"127.0.0.1:{metrics}"],
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=1) as r:
                if r.status == 200:
                    break
        except OSError:
            time.sleep(0.05)
    else:
        proc.kill()
        proc.wait()
        log.seek(0)
        raise RuntimeError("modelgate --demo did not start: " + log.read().decode(errors="replace"))
    yield {"base": base, "metrics": f"http://127.0.0.1:{metrics}/metrics"}
    proc.terminate()
    proc.wait(timeout=10)
    log.close()

DEMO_LIMITED_KEY = "sk-modelgate-demo-limited"  # rpm: 2 in the demo config
DEMO_BUDGET_KEY = "sk-modelgate-demo-budget"  # a budget of 2 requests a day

# One demo model per provider kind: every SDK test runs against each.
MODELS_BY_KIND = ["gpt-4o-mini", "claude-demo", "gemini-demo"]


def pytest_terminal_summary(terminalreporter):
    """The wire-conformance table (test_conformance.py), when that suite ran."""
    import sys

    rep = sys.modules.get("conformance.report")
    if rep is None or not rep.EXCHANGES:
        return
    elapsed = time.time() - rep.STARTED_AT[0] if rep.STARTED_AT else None
    path = rep.write(elapsed)
    t = rep.totals()
    terminalreporter.section("wire conformance")
    for line in rep.table().splitlines():
        terminalreporter.write_line(line)
    terminalreporter.write_line(
        f"{t['exchanges']} exchanges, {t['documents']} documents validated; exchanges failing client side: "
        f"{t['client_fail']}, provider side: {t['provider_fail']}; warnings: {t['warnings']}; "
        f"distinct violations: {len(rep.distinct('fail'))} (details: {path})"
    )
