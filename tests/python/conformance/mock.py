"""A mock provider speaking each provider kind's own wire format, on one loopback port.

Paths say the kind (each provider's `base_url` has its own prefix): `/openai/v1/chat/completions`,
`/openai-responses/v1/responses`, `/anthropic/v1/messages`,
`/gemini/v1beta/models/{m}:generateContent` (or `:streamGenerateContent?alt=sse`).
The model name says the case (cases.provider_model). Every request is recorded with its
headers and body for the provider-side checks. Answers follow the providers' published
objects and event sequences (the self-checks validate them against the same
definitions as the gateway's output), streamed with chunked encoding so that a cut
stream is a real transport failure: some events, then the socket closes without the
final chunk.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from .cases import CALL_ARGS, TOOL_NAME, case_of_model

CREATED = 1767225600
TEXT = "Hello from the conformance mock."
JSON_TEXT = json.dumps({"city": "Paris", "temp_c": 18})
THINKING = "The user greets me; answer briefly."
SIGNATURE = "c2lnbmF0dXJlLW9mLXRoZS1tb2Nr"  # base64, as Gemini's bytes and Anthropic's signatures are


def _pieces(text: str, n: int = 3) -> list[str]:
    step = max(1, len(text) // n)
    out = [text[i : i + step] for i in range(0, len(text), step)]
    return out


def _plan(case) -> list[tuple]:
    """What the model 'says' for a case, independent of the wire format."""
    if case.output == "tool":
        return [("tool", TOOL_NAME, CALL_ARGS)]
    if case.output == "json":
        return [("text", JSON_TEXT)]
    if case.output == "reasoning":
        return [("reasoning", THINKING), ("text", TEXT)]
    if case.output == "length":
        return [("text", TEXT), ("length",)]  # cut off by the output-token limit
    return [("text", TEXT)]


def _truncated(plan) -> bool:
    return ("length",) in plan


USAGE_IN, USAGE_OUT = 12, 9


# --- OpenAI Chat Completions -----------------------------------------------------------


def openai_chat_json(model, plan, reasoning_tokens=0):
    msg = {"role": "assistant", "content": None, "refusal": None, "annotations": []}
    finish = "stop"
    for p in plan:
        if p[0] == "text":
            msg["content"] = p[1]
        elif p[0] == "tool":
            msg["tool_calls"] = [{"id": "call_mock0001", "type": "function", "function": {"name": p[1], "arguments": json.dumps(p[2])}}]
            finish = "tool_calls"
    if _truncated(plan):
        finish = "length"
    return {
        "id": "chatcmpl-mock0001", "object": "chat.completion", "created": CREATED, "model": model,
        "choices": [{"index": 0, "message": msg, "logprobs": None, "finish_reason": finish}],
        "usage": _chat_usage(reasoning_tokens), "service_tier": "default", "system_fingerprint": "fp_mock",
    }


def _chat_usage(reasoning_tokens=0):
    return {
        "prompt_tokens": USAGE_IN, "completion_tokens": USAGE_OUT, "total_tokens": USAGE_IN + USAGE_OUT,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": reasoning_tokens, "audio_tokens": 0,
                                      "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
    }


def openai_chat_sse(model, plan, include_usage, reasoning_tokens=0):
    def chunk(delta, finish=None):
        c = {"id": "chatcmpl-mock0001", "object": "chat.completion.chunk", "created": CREATED, "model": model,
             "service_tier": "default", "system_fingerprint": "fp_mock",
             "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        if include_usage:
            c["usage"] = None
        return c

    events = [chunk({"role": "assistant", "content": "", "refusal": None})]
    finish = "stop"
    for p in plan:
        if p[0] == "text":
            events += [chunk({"content": t}) for t in _pieces(p[1])]
        elif p[0] == "tool":
            finish = "tool_calls"
            args = json.dumps(p[2])
            events.append(chunk({"tool_calls": [{"index": 0, "id": "call_mock0001", "type": "function", "function": {"name": p[1], "arguments": ""}}]}))
            events += [chunk({"tool_calls": [{"index": 0, "function": {"arguments": a}}]}) for a in _pieces(args)]
    events.append(chunk({}, "length" if _truncated(plan) else finish))
    if include_usage:
        last = chunk({})
        last["choices"], last["usage"] = [], _chat_usage(reasoning_tokens)
        events.append(last)
    return [(None, json.dumps(e)) for e in events] + [(None, "[DONE]")]


# --- OpenAI Responses --------------------------------------------------------------------


def _resp_items(plan, done=True):
    items = []
    final = "incomplete" if _truncated(plan) else "completed"
    for p in plan:
        if p[0] == "reasoning":
            items.append({"type": "reasoning", "id": "rs_mock0001", "summary": [{"type": "summary_text", "text": p[1]}] if done else [],
                          "status": "completed" if done else "in_progress"})
        elif p[0] == "text":
            items.append({"type": "message", "id": "msg_mock0001", "status": final if done else "in_progress", "role": "assistant",
                          "content": [{"type": "output_text", "text": p[1], "annotations": [], "logprobs": []}] if done else []})
        elif p[0] == "tool":
            items.append({"type": "function_call", "id": "fc_mock0001", "call_id": "call_mock0001", "name": p[1],
                          "arguments": json.dumps(p[2]) if done else "", "status": "completed" if done else "in_progress"})
    return items


def responses_object(request, plan, status="completed"):
    """A Response echoing the request's settings, as the API does."""
    r = {
        "id": "resp_mock0001", "object": "response", "created_at": CREATED, "status": status,
        "completed_at": CREATED + 1 if status == "completed" else None,
        "background": False, "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "instructions": request.get("instructions"), "max_output_tokens": request.get("max_output_tokens"),
        "model": request.get("model"), "output": _resp_items(plan) if status in ("completed", "incomplete") else [],
        "parallel_tool_calls": request.get("parallel_tool_calls", True), "previous_response_id": None,
        "reasoning": {"effort": (request.get("reasoning") or {}).get("effort"), "summary": (request.get("reasoning") or {}).get("summary")},
        "service_tier": "default",
        "temperature": request.get("temperature", 1.0), "top_p": request.get("top_p", 1.0),
        "text": request.get("text") or {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": request.get("tool_choice", "auto"), "tools": request.get("tools", []),
        "truncation": "disabled", "metadata": request.get("metadata") or {},
    }
    if status in ("completed", "incomplete"):
        r["usage"] = {"input_tokens": USAGE_IN, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0}, "output_tokens": USAGE_OUT,
                      "output_tokens_details": {"reasoning_tokens": 4 if any(p[0] == "reasoning" for p in plan) else 0},
                      "total_tokens": USAGE_IN + USAGE_OUT}
    return r


def responses_sse(request, plan):
    seq = iter(range(10_000))
    events = []

    def ev(type_, **kw):
        events.append({"type": type_, "sequence_number": next(seq), **kw})

    ev("response.created", response=responses_object(request, plan, "in_progress"))
    ev("response.in_progress", response=responses_object(request, plan, "in_progress"))
    for oi, (p, started, done) in enumerate(zip(plan, _resp_items(plan, False), _resp_items(plan, True))):
        ev("response.output_item.added", output_index=oi, item=started)
        iid = started["id"]
        if p[0] == "reasoning":
            ev("response.reasoning_summary_part.added", item_id=iid, output_index=oi, summary_index=0, part={"type": "summary_text", "text": ""})
            for t in _pieces(p[1]):
                ev("response.reasoning_summary_text.delta", item_id=iid, output_index=oi, summary_index=0, delta=t)
            ev("response.reasoning_summary_text.done", item_id=iid, output_index=oi, summary_index=0, text=p[1])
            ev("response.reasoning_summary_part.done", item_id=iid, output_index=oi, summary_index=0, part={"type": "summary_text", "text": p[1]})
        elif p[0] == "text":
            ev("response.content_part.added", item_id=iid, output_index=oi, content_index=0,
               part={"type": "output_text", "text": "", "annotations": [], "logprobs": []})
            for t in _pieces(p[1]):
                ev("response.output_text.delta", item_id=iid, output_index=oi, content_index=0, delta=t, logprobs=[])
            ev("response.output_text.done", item_id=iid, output_index=oi, content_index=0, text=p[1], logprobs=[])
            ev("response.content_part.done", item_id=iid, output_index=oi, content_index=0, part=done["content"][0])
        elif p[0] == "tool":
            for a in _pieces(done["arguments"]):
                ev("response.function_call_arguments.delta", item_id=iid, output_index=oi, delta=a)
            ev("response.function_call_arguments.done", item_id=iid, output_index=oi, name=p[1], arguments=done["arguments"])
        ev("response.output_item.done", output_index=oi, item=done)
    if _truncated(plan):
        ev("response.incomplete", response=responses_object(request, plan, "incomplete"))
    else:
        ev("response.completed", response=responses_object(request, plan, "completed"))
    return [(e["type"], json.dumps(e)) for e in events]


# --- Anthropic Messages --------------------------------------------------------------------


def _anthropic_usage(start=False):
    return {
        "input_tokens": USAGE_IN, "output_tokens": 1 if start else USAGE_OUT,
        "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
        "cache_creation": {"ephemeral_1h_input_tokens": 0, "ephemeral_5m_input_tokens": 0},
        "inference_geo": None, "output_tokens_details": {"thinking_tokens": 0}, "server_tool_use": None,
        "service_tier": "standard", "speed": None,
    }


def _anthropic_blocks(plan):
    blocks = []
    for p in plan:
        if p[0] == "reasoning":
            blocks.append({"type": "thinking", "thinking": p[1], "signature": SIGNATURE})
        elif p[0] == "text":
            blocks.append({"type": "text", "text": p[1], "citations": None})
        elif p[0] == "tool":
            blocks.append({"type": "tool_use", "id": "toolu_mock0001", "name": p[1], "input": p[2], "caller": {"type": "direct"}})
    return blocks


def _stop_reason(plan):
    if _truncated(plan):
        return "max_tokens"
    return "tool_use" if any(p[0] == "tool" for p in plan) else "end_turn"


def anthropic_json(model, plan):
    return {
        "id": "msg_mock0001", "type": "message", "role": "assistant", "model": model, "content": _anthropic_blocks(plan),
        "stop_reason": _stop_reason(plan), "stop_sequence": None, "stop_details": None, "container": None,
        "diagnostics": None, "usage": _anthropic_usage(),
    }


def anthropic_sse(model, plan):
    start = anthropic_json(model, plan)
    start.update(content=[], stop_reason=None, usage=_anthropic_usage(start=True))
    events = [{"type": "message_start", "message": start}, {"type": "ping"}]
    for i, b in enumerate(_anthropic_blocks(plan)):
        if b["type"] == "text":
            events.append({"type": "content_block_start", "index": i, "content_block": {**b, "text": ""}})
            events += [{"type": "content_block_delta", "index": i, "delta": {"type": "text_delta", "text": t}} for t in _pieces(b["text"])]
        elif b["type"] == "thinking":
            events.append({"type": "content_block_start", "index": i, "content_block": {**b, "thinking": "", "signature": ""}})
            events += [{"type": "content_block_delta", "index": i, "delta": {"type": "thinking_delta", "thinking": t}} for t in _pieces(b["thinking"])]
            events.append({"type": "content_block_delta", "index": i, "delta": {"type": "signature_delta", "signature": b["signature"]}})
        elif b["type"] == "tool_use":
            events.append({"type": "content_block_start", "index": i, "content_block": {**b, "input": {}}})
            events += [{"type": "content_block_delta", "index": i, "delta": {"type": "input_json_delta", "partial_json": a}}
                       for a in _pieces(json.dumps(b["input"]))]
        events.append({"type": "content_block_stop", "index": i})
    usage = {k: v for k, v in _anthropic_usage().items() if k in ("input_tokens", "output_tokens", "cache_creation_input_tokens",
                                                                  "cache_read_input_tokens", "output_tokens_details", "server_tool_use")}
    events.append({"type": "message_delta", "delta": {"stop_reason": _stop_reason(plan), "stop_sequence": None, "stop_details": None, "container": None},
                   "usage": usage})
    events.append({"type": "message_stop"})
    return [(e["type"], json.dumps(e)) for e in events]


# --- Gemini --------------------------------------------------------------------------------


def _gemini_parts(plan):
    parts = []
    for p in plan:
        if p[0] == "reasoning":
            parts.append({"text": p[1], "thought": True})
        elif p[0] == "text":
            parts.append({"text": p[1]})
        elif p[0] == "tool":
            parts.append({"functionCall": {"name": p[1], "args": p[2]}})
    # Gemini signs the first part after thinking, or the first function call.
    for part in parts:
        if not part.get("thought"):
            part["thoughtSignature"] = SIGNATURE
            break
    return parts


def _gemini_usage(plan):
    u = {"promptTokenCount": USAGE_IN, "candidatesTokenCount": USAGE_OUT, "totalTokenCount": USAGE_IN + USAGE_OUT,
         "promptTokensDetails": [{"modality": "TEXT", "tokenCount": USAGE_IN}]}
    if any(p[0] == "reasoning" for p in plan):
        u["thoughtsTokenCount"] = 4
        u["totalTokenCount"] += 4
    return u


def _gemini_finish(plan):
    return "MAX_TOKENS" if _truncated(plan) else "STOP"


def gemini_json(model, plan):
    return {"candidates": [{"content": {"role": "model", "parts": _gemini_parts(plan)}, "finishReason": _gemini_finish(plan), "index": 0}],
            "usageMetadata": _gemini_usage(plan), "modelVersion": model, "responseId": "mockresp0001"}


def gemini_sse(model, plan):
    parts = _gemini_parts(plan)
    split = []
    for part in parts:
        if "text" in part:
            for k, t in enumerate(_pieces(part["text"])):
                piece = {**part, "text": t}
                if k:
                    piece.pop("thoughtSignature", None)
                split.append(piece)
        else:
            split.append(part)
    out = []
    for k, part in enumerate(split):
        last = k == len(split) - 1
        cand = {"content": {"role": "model", "parts": [part]}, "index": 0}
        chunk = {"candidates": [cand], "modelVersion": model, "responseId": "mockresp0001"}
        if last:
            cand["finishReason"] = _gemini_finish(plan)
            chunk["usageMetadata"] = _gemini_usage(plan)
        out.append((None, json.dumps(chunk)))
    return out


# --- errors ------------------------------------------------------------------------------------


def error_body(kind: str, status: int) -> dict:
    if kind.startswith("openai"):
        return {"error": {"message": "Rate limit reached for requests", "type": "requests", "param": None, "code": "rate_limit_exceeded"}}
    if kind == "anthropic":
        return {"type": "error", "error": {"type": "rate_limit_error", "message": "Number of requests has exceeded your rate limit"},
                "request_id": "req_mock0001"}
    return {"error": {"code": status, "message": "Resource has been exhausted (e.g. check quota).", "status": "RESOURCE_EXHAUSTED"}}


def render(kind: str, case, body: dict, model: str, stream: bool):
    """The mock's answer: ("json", status, body, headers) or ("sse", [(event name, data)])."""
    if case.error:
        return ("json", case.error, error_body(kind, case.error), {"retry-after": "1"})
    plan = _plan(case)
    reasoning_tokens = 4 if case.output == "reasoning" else 0
    if kind == "openai":
        if not stream:
            return ("json", 200, openai_chat_json(model, plan, reasoning_tokens), {})
        include = (body.get("stream_options") or {}).get("include_usage") is True
        return ("sse", openai_chat_sse(model, plan, include, reasoning_tokens))
    if kind == "openai-responses":
        status = "incomplete" if _truncated(plan) else "completed"
        return ("sse", responses_sse(body, plan)) if stream else ("json", 200, responses_object(body, plan, status), {})
    if kind == "anthropic":
        return ("sse", anthropic_sse(model, plan)) if stream else ("json", 200, anthropic_json(model, plan), {})
    if kind == "gemini":
        return ("sse", gemini_sse(model, plan)) if stream else ("json", 200, gemini_json(model, plan), {})
    raise ValueError(kind)


# --- the server --------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "conformance-mock/1"

    def log_message(self, *args):
        pass

    def _body(self) -> bytes:
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("content-length") or 0))

    def do_POST(self):
        raw = self._body()
        url = urlsplit(self.path)
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        kind = url.path.split("/")[1]
        record = {"time": time.time(), "kind": kind, "method": "POST", "path": url.path, "query": parse_qs(url.query),
                  "headers": {k.lower(): v for k, v in self.headers.items()}, "raw": raw, "body": body}
        self.server.mock.record(record)
        try:
            self._answer(kind, url, body if isinstance(body, dict) else {})
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _answer(self, kind, url, body):
        if kind not in ("openai", "openai-responses", "anthropic", "gemini"):
            return self._json(404, {"error": {"message": f"mock: unknown path {url.path}"}})
        if kind == "gemini":
            model = url.path.rsplit("/", 1)[-1].split(":")[0]
            stream = url.path.endswith(":streamGenerateContent")
        else:
            model = body.get("model", "")
            stream = body.get("stream") is True
        try:
            case = case_of_model(model)
        except (KeyError, IndexError):
            return self._json(404, {"error": {"message": f"mock: unknown model {model!r}"}})
        what = render(kind, case, body, model, stream)
        if what[0] == "json":
            return self._json(what[1], what[2], what[3])
        return self._sse(what[1], case.cut)

    def _json(self, status, obj, headers=None):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _sse(self, events, cut):
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        if cut:
            events = events[: max(2, len(events) // 2)]
        for name, data in events:
            frame = (f"event: {name}\n" if name else "") + f"data: {data}\n\n"
            b = frame.encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(b), b))
            self.wfile.flush()
        if cut:
            # No final chunk: the provider went away mid-stream.
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # a cut stream's socket errors are the point, not news


class MockProvider:
    def __init__(self):
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.mock = self
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)

    def record(self, r):
        with self._lock:
            self.requests.append(r)

    def for_request_id(self, rid: str) -> list[dict]:
        with self._lock:
            return [r for r in self.requests if r["headers"].get("x-request-id") == rid]

    def since(self, t: float, model_part: str) -> list[dict]:
        with self._lock:
            return [r for r in self.requests if r["time"] >= t and model_part in (r["path"] + json.dumps(r["body"] or {}))]

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
