"""The gateway under test: one provider per kind pointing at the mock, one public model
per (client, provider, case)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from .cases import CASES, CLIENT_KEY, pairs, provider_model, public_model

PROVIDER_CREDENTIAL = {
    "openai": "sk-provider-openai-0001",
    "openai-responses": "sk-provider-openai-resp-0001",
    "anthropic": "sk-ant-provider-0001",
    "gemini": "provider-gemini-0001",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def provider_name(provider: str) -> str:
    return f"mock-{provider}"


def config(mock_port: int, port: int, metrics_port: int, state: Path) -> dict:
    base = f"http://127.0.0.1:{mock_port}"
    providers = {
        provider_name("openai"): {"kind": "openai", "base_url": f"{base}/openai", "responses_api": False},
        provider_name("openai-responses"): {"kind": "openai", "base_url": f"{base}/openai-responses", "responses_api": True},
        provider_name("anthropic"): {"kind": "anthropic", "base_url": f"{base}/anthropic"},
        provider_name("gemini"): {"kind": "gemini", "base_url": f"{base}/gemini"},
    }
    for kind, p in providers.items():
        p["credentials"] = [PROVIDER_CREDENTIAL[kind[len("mock-"):]]]
        p["timeouts"] = {"connect": "2s", "first_byte": "10s"}
    models = {}
    for client, provider in pairs():
        for case in CASES:
            models[public_model(client, provider, case.name)] = {
                "targets": [{"provider": provider_name(provider), "model": provider_model(client, provider, case)}]
            }
    return {
        "server": {
            "listen": f"127.0.0.1:{port}",
            "metrics_listen": f"127.0.0.1:{metrics_port}",
            "threads": 2,
            "pid_file": str(state / "modelgate.pid"),
            "upgrade_sock": str(state / "upgrade.sock"),
            "grace_period": "2s",
            "drain_delay": "0s",
        },
        "store": {"url": "memory"},
        "pricing": {"*": {"input": 0, "output": 0}},  # mock models: no price warnings
        "providers": providers,
        "models": models,
        "keys": [{"name": "conformance", "key": CLIENT_KEY}],
        # One attempt: each exchange is exactly one provider request.
        "retry": {"max_attempts": 1},
    }


class Gateway:
    def __init__(self, binary: str, mock_port: int):
        self.binary = binary
        self.state = Path(tempfile.mkdtemp(prefix="modelgate-conformance-"))
        self.port, self.metrics_port = _free_port(), _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        # JSON is YAML: the config is written as JSON.
        self.config_path = self.state / "modelgate.yaml"
        self.config_path.write_text(json.dumps(config(mock_port, self.port, self.metrics_port, self.state), indent=1))
        self.proc = None
        self.log = None

    def __enter__(self):
        check = subprocess.run([self.binary, "-t", "-c", str(self.config_path)], capture_output=True, text=True, timeout=30)
        if check.returncode != 0:
            raise RuntimeError(f"the conformance config does not validate:\n{check.stderr}")
        # The log goes to a file: a pipe nobody reads would fill and block the gateway.
        self.log = open(self.state / "modelgate.log", "wb")
        self.proc = subprocess.Popen([self.binary, "-c", str(self.config_path)], stdout=subprocess.DEVNULL, stderr=self.log,
                                     env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")})
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                with urllib.request.urlopen(f"{self.base}/health", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.05)
        log = self.log_text()
        self.__exit__()
        raise RuntimeError("modelgate did not start: " + log)

    def log_text(self) -> str:
        try:
            return (self.state / "modelgate.log").read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def __exit__(self, *exc):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self.log:
            self.log.close()
        shutil.rmtree(self.state, ignore_errors=True)
