"""One exchange: a client request through the gateway, and both sides checked.

Client side: what the gateway answered, against the client protocol's definitions
(unknown fields are warnings). Provider side: what the gateway sent the mock, against the
provider protocol's definitions (unknown fields are failures).
"""

from __future__ import annotations

import http.client
import json
import time
from dataclasses import dataclass, field

from . import anthropic_types, gemini_proto, openai_schema, streams
from .cases import CLIENT_KEY, Case, ClientRequest, client_request, provider_model
from .findings import FAIL, WARN, Checked, Finding, snippet
from .gateway import PROVIDER_CREDENTIAL

CHAT = openai_schema.roots("/chat/completions")
RESPONSES = openai_schema.roots("/responses")


@dataclass
class Exchange:
    client: str
    provider: str
    case: Case
    request: ClientRequest
    request_id: str
    status: int = 0
    headers: dict = field(default_factory=dict)
    raw: bytes = b""
    transport_error: str = ""
    provider_requests: list = field(default_factory=list)
    client_side: Checked = field(default_factory=Checked)
    provider_side: Checked = field(default_factory=Checked)
    note: str = ""

    @property
    def id(self) -> str:
        return f"{self.client}/{self.provider}/{self.case.name}"


def send(port: int, req: ClientRequest, request_id: str, timeout: float = 15):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(req.method, req.path, body=json.dumps(req.body).encode(), headers={**req.headers, "x-request-id": request_id})
        resp = conn.getresponse()
        headers = {k.lower(): v for k, v in resp.getheaders()}
        try:
            raw, err = resp.read(), ""
        except http.client.IncompleteRead as e:
            raw, err = e.partial, "the connection closed before the body's end (incomplete chunked body)"
        return resp.status, headers, raw, err
    finally:
        conn.close()


# --- per-protocol validators ----------------------------------------------------------------


def _openai_body(component, body, level):
    return openai_schema.check(component, body, level)


def _responses_event(body, level):
    # Validated against the union; picked by `type` first for precise messages.
    branch = openai_schema.discriminated_branch(RESPONSES["stream"], body.get("type")) if isinstance(body, dict) else None
    if branch is None:
        return openai_schema.check(RESPONSES["stream"], body, level)
    return openai_schema.check(branch, body, level)


def validate_body(protocol: str, role: str, body, level: str, http_status: int | None = None, model: str = ""):
    """role: request, response, event, error."""
    if protocol == "openai-chat":
        return _openai_body({"request": CHAT["request"], "response": CHAT["response"], "event": CHAT["stream"], "error": CHAT["error"]}[role], body, level)
    if protocol == "openai-responses":
        if role == "event":
            return _responses_event(body, level)
        return _openai_body({"request": RESPONSES["request"], "response": RESPONSES["response"], "error": RESPONSES["error"]}[role], body, level)
    if protocol == "anthropic":
        if role == "request":
            return anthropic_types.check_request(body, level)
        return {"response": anthropic_types.check_message, "event": anthropic_types.check_event, "error": anthropic_types.check_error}[role](body, level)
    if protocol == "gemini":
        if role == "request":
            return gemini_proto.check_request(body, model)
        if role == "error":
            return gemini_proto.check_error(body, level, http_status)
        return gemini_proto.check_response(body, level)
    raise ValueError(protocol)


def _is_error_event(protocol, ev: streams.Event) -> bool:
    j = ev.json
    if protocol == "anthropic":
        return ev.kind == "error"
    if protocol == "openai-responses":
        return False  # `error` is a ResponseStreamEvent of its own
    return isinstance(j, dict) and "error" in j


def validate_stream(protocol: str, raw: bytes, level: str, include_usage: bool = False) -> tuple[list[Finding], int]:
    """Every event against its schema, then the protocol's ordering rules."""
    events, findings = streams.parse_sse(raw)
    docs = 0
    for ev in events:
        if ev.json is None:
            continue
        docs += 1
        where = f"event {ev.index} ({ev.kind})"
        if _is_error_event(protocol, ev):
            fs = validate_body(protocol, "error", ev.json, level)
        elif protocol == "anthropic" and ev.kind == "ping":
            # Not in RawMessageStreamEvent; the SDK's stream reader skips it by name.
            fs = [Finding(level, "anthropic stream: ping", f"$.{k}", f"field `{k}` in a ping event") for k in ev.json if k != "type"]
        else:
            fs = validate_body(protocol, "event", ev.json, level)
        for f in fs:
            f.where = f.where or where
        findings += fs
    rules = {
        "openai-chat": lambda: streams.chat_rules(events, include_usage),
        "openai-responses": lambda: streams.responses_rules(events),
        "anthropic": lambda: streams.anthropic_rules(events),
        "gemini": lambda: streams.gemini_rules(events),
    }[protocol]()
    return findings + rules, docs


# --- client side -----------------------------------------------------------------------------


def _json(raw: bytes):
    try:
        return json.loads(raw)
    except ValueError:
        return None


def check_client_side(x: Exchange):
    side, proto, case = x.client_side, x.client, x.case
    ctype = x.headers.get("content-type", "")
    if x.transport_error:
        side.add([Finding(FAIL, "HTTP", "$", x.transport_error, example=snippet(x.raw[-200:].decode(errors="replace")))])
    if x.status >= 400:
        if case.error and x.status != case.error:
            side.add([Finding(FAIL, "provider error status (docs/api.md: status kept)", "$", f"the provider answered {case.error}, the client got {x.status}")])
        elif not case.error:
            # A documented refusal is the protocol's answer too: its body is checked as an
            # error; only a 5xx (the gateway failing) counts as a failure.
            level = FAIL if x.status >= 500 else WARN
            x.note = f"refused with {x.status}"
            side.add([Finding(level, "gateway refusal", "$", f"{x.status} for a request the protocol allows", example=snippet(_json(x.raw) or x.raw[:200].decode(errors="replace")))])
        if not ctype.startswith("application/json"):
            side.add([Finding(FAIL, "HTTP content-type", "$", f"an error body must be application/json, got {ctype!r}")])
        side.documents += 1
        side.add(validate_body(proto, "error", _json(x.raw), WARN, x.status), "error body")
        return
    if case.error:
        side.add([Finding(FAIL, "provider error status (docs/api.md: status kept)", "$", f"the provider answered {case.error}, the client got {x.status}")])
        return
    if x.status != 200:
        side.add([Finding(FAIL, "HTTP status", "$", f"unexpected status {x.status}")])
        return
    if x.request.stream:
        if not ctype.startswith("text/event-stream"):
            side.add([Finding(FAIL, "HTTP content-type", "$", f"a stream must be text/event-stream, got {ctype!r}")])
        include = bool((x.request.body.get("stream_options") or {}).get("include_usage"))
        findings, docs = validate_stream(proto, x.raw, WARN, include)
        side.documents += docs
        side.add(findings)
    else:
        if not ctype.startswith("application/json"):
            side.add([Finding(FAIL, "HTTP content-type", "$", f"a response must be application/json, got {ctype!r}")])
        side.documents += 1
        side.add(validate_body(proto, "response", _json(x.raw), WARN), "response")


# --- provider side ----------------------------------------------------------------------------

_PROVIDER_PROTOCOL = {"openai": "openai-chat", "openai-responses": "openai-responses", "anthropic": "anthropic", "gemini": "gemini"}


def _expected_path(provider, model, stream):
    if provider == "openai":
        return "/openai/v1/chat/completions"
    if provider == "openai-responses":
        return "/openai-responses/v1/responses"
    if provider == "anthropic":
        return "/anthropic/v1/messages"
    return f"/gemini/v1beta/models/{model}:" + ("streamGenerateContent" if stream else "generateContent")


def check_provider_side(x: Exchange):
    side = x.provider_side
    reqs = x.provider_requests
    if not reqs:
        if 400 <= x.status < 500 and not x.case.error:
            return  # refused by the gateway (reported on the client side)
        side.add([Finding(FAIL, "provider request", "$", f"no request reached the provider (client got {x.status})")])
        return
    if len(reqs) > 1:
        side.add([Finding(FAIL, "provider request", "$", f"{len(reqs)} requests reached the provider for one client request (max_attempts: 1)")])
    model = provider_model(x.client, x.provider, x.case)
    for r in reqs:
        h, where = r["headers"], "request"
        out = []
        want = _expected_path(x.provider, model, x.case.stream)
        if r["path"] != want:
            out.append(Finding(FAIL, "provider path", "$", f"POST {r['path']}, expected {want}"))
        if x.provider == "gemini" and x.case.stream and r["query"].get("alt") != ["sse"]:
            out.append(Finding(FAIL, "Gemini stream", "$", f"streamGenerateContent without alt=sse (query {r['query']})"))
        cred = PROVIDER_CREDENTIAL[x.provider]
        auth = {"openai": ("authorization", f"Bearer {cred}"), "openai-responses": ("authorization", f"Bearer {cred}"),
                "anthropic": ("x-api-key", cred), "gemini": ("x-goog-api-key", cred)}[x.provider]
        if h.get(auth[0]) != auth[1]:
            out.append(Finding(FAIL, "provider auth header", "$", f"`{auth[0]}` should be the provider credential, got {h.get(auth[0])!r}"))
        leaked = [k for k, v in h.items() if CLIENT_KEY in v]
        if leaked:
            out.append(Finding(FAIL, "client key", "$", f"the client's key reached the provider in {leaked}"))
        if not h.get("content-type", "").startswith("application/json"):
            out.append(Finding(FAIL, "HTTP content-type", "$", f"request content-type {h.get('content-type')!r}"))
        if x.provider == "anthropic":
            version = h.get("anthropic-version")
            if not version:
                out.append(Finding(FAIL, "anthropic-version", "$", "no anthropic-version header"))
            elif version != anthropic_types.anthropic_version():
                out.append(Finding(WARN, "anthropic-version", "$", f"sent {version}; the request types checked are the SDK's, for {anthropic_types.anthropic_version()}"))
        body = r["body"]
        if body is None:
            out.append(Finding(FAIL, "provider request body", "$", "the body is not JSON", example=snippet(r["raw"][:200].decode(errors="replace"))))
        else:
            if x.case.stream and x.provider != "gemini" and body.get("stream") is not True:
                out.append(Finding(FAIL, "provider stream", "$.stream", "the client streams; the provider request does not", example=snippet(body.get("stream"))))
            side.documents += 1
            out += validate_body(_PROVIDER_PROTOCOL[x.provider], "request", body, FAIL, model=model)
        side.add(out, where)


def run(port: int, mock, client: str, provider: str, case: Case) -> Exchange:
    req = client_request(client, provider, case)
    rid = f"conf-{client}-{provider}-{case.name}"
    x = Exchange(client, provider, case, req, rid)
    start = time.time()
    try:
        x.status, x.headers, x.raw, x.transport_error = send(port, req, rid)
    except OSError as e:
        x.transport_error = f"request failed: {e}"
    x.provider_requests = mock.for_request_id(rid) or mock.since(start, provider_model(client, provider, case))
    check_client_side(x)
    check_provider_side(x)
    return x
