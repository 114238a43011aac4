"""Wire conformance: every client protocol × provider kind × case through the gateway,
both sides checked against the official definitions (tests/python/conformance/).

- test_client_side[client/provider/case]: what the client received, against the client
  protocol (OpenAI's OpenAPI document, the Anthropic SDK types with the TS SDK's required
  fields, Gemini's protos) plus the stream rules. Unknown fields: warnings.
- test_provider_side[client/provider/case]: what the mock provider received, against the
  provider protocol. Unknown fields: failures.
- test_self_check_*: the requests this suite sends and the answers its mock gives pass
  the same checks, so a failure above is the gateway's.

The table and the distinct violations go to target/conformance.md and the terminal
summary. Run: MODELGATE_BIN=target/release/modelgate .venv/bin/python -m pytest -q tests/python/test_conformance.py
"""

from __future__ import annotations

import os
import time

import pytest

from conformance import exchange, mock, report
from conformance.cases import CASES, CLIENTS, PROVIDERS, client_request, pairs, provider_model
from conformance.findings import FAIL, Finding
from conformance.gateway import Gateway

MATRIX = [(c, p, case) for c, p in pairs() for case in CASES]
IDS = [f"{c}/{p}/{case.name}" for c, p, case in MATRIX]


@pytest.fixture(scope="module")
def env():
    binary = os.environ.get("MODELGATE_BIN", "target/debug/modelgate")
    if not os.path.exists(binary):
        pytest.fail(f"MODELGATE_BIN={binary} does not exist")
    report.STARTED_AT.append(time.time())
    with mock.MockProvider() as m, Gateway(binary, m.port) as g:
        yield {"mock": m, "gateway": g}
    report.write(time.time() - report.STARTED_AT[0])


_done: dict[str, exchange.Exchange] = {}


def _exchange(env, client, provider, case) -> exchange.Exchange:
    key = f"{client}/{provider}/{case.name}"
    if key not in _done:
        _done[key] = exchange.run(env["gateway"].port, env["mock"], client, provider, case)
        report.record(_done[key])
    return _done[key]


def _explain(x, side) -> str:
    lines = [f"{x.id}: {len(side.failures)} failure(s), {len(side.warnings)} warning(s) (HTTP {x.status})"]
    lines += ["  " + f.describe() for f in side.failures[:25]]
    if len(side.failures) > 25:
        lines.append(f"  … {len(side.failures) - 25} more")
    return "\n".join(lines)


@pytest.mark.parametrize("client,provider,case", MATRIX, ids=IDS)
def test_client_side(env, client, provider, case):
    x = _exchange(env, client, provider, case)
    if x.client_side.failures:
        pytest.fail(_explain(x, x.client_side), pytrace=False)


@pytest.mark.parametrize("client,provider,case", MATRIX, ids=IDS)
def test_provider_side(env, client, provider, case):
    x = _exchange(env, client, provider, case)
    if x.provider_side.failures:
        pytest.fail(_explain(x, x.provider_side), pytrace=False)


# --- self-checks: what the suite itself sends and answers ------------------------------------

_PROTOCOL_OF_PROVIDER = {"openai": "openai-chat", "openai-responses": "openai-responses", "anthropic": "anthropic", "gemini": "gemini"}


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_self_check_client_request(client, case):
    # The provider only changes the model name in the request.
    req = client_request(client, "openai-responses" if client == "openai-responses" else "openai", case)
    model = req.path.split("/models/")[1].split(":")[0] if client == "gemini" else ""
    failures = [f for f in exchange.validate_body(client, "request", req.body, FAIL, model=model) if f.level == FAIL]
    report.SELF_CHECKS[f"request {client}/{case.name}"] = failures
    if failures:
        pytest.fail("\n".join(f.describe() for f in failures), pytrace=False)


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_self_check_mock_answer(provider, case):
    """The mock's answers, strictly: unknown fields fail here too."""
    proto = _PROTOCOL_OF_PROVIDER[provider]
    req = client_request(proto, provider, case)
    model = provider_model(proto, provider, case)
    body = {**req.body, "model": model}
    if provider == "openai" and case.stream:
        body["stream_options"] = {"include_usage": True}
    what = mock.render(provider, case, body, model, case.stream)
    failures: list[Finding] = []
    if what[0] == "json":
        role = "error" if what[1] >= 400 else "response"
        failures = exchange.validate_body(proto, role, what[2], FAIL, what[1])
    else:
        events = what[1][: max(2, len(what[1]) // 2)] if case.cut else what[1]
        raw = "".join((f"event: {n}\n" if n else "") + f"data: {d}\n\n" for n, d in events).encode()
        failures, _ = exchange.validate_stream(proto, raw, FAIL, include_usage=provider == "openai")
        if case.cut:
            # A cut stream is incomplete by design; only its events must be well formed.
            failures = [f for f in failures if not f.rule.startswith("stream: ")]
    failures = [f for f in failures if f.level == FAIL]
    report.SELF_CHECKS[f"mock {provider}/{case.name}"] = failures
    if failures:
        pytest.fail("\n".join(f.describe() for f in failures), pytrace=False)
