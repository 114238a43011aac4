"""SSE framing and the ordering rules of each protocol's stream.

The shape of every single event is checked by the schema modules; what is checked here
is what no per-event schema can say: order, pairing, ids and counters across events,
and how a stream must end (its terminal event, or the protocol's error signal).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from .findings import FAIL, Finding, snippet


@dataclass
class Event:
    event: str | None  # the SSE `event:` field
    data: str  # the joined `data:` lines
    json: object = None  # parsed data, when it is JSON
    index: int = 0

    @property
    def kind(self) -> str:
        if isinstance(self.json, dict) and isinstance(self.json.get("type"), str):
            return self.json["type"]
        return self.event or "data"


def parse_sse(raw: bytes) -> tuple[list[Event], list[Finding]]:
    """Splits an event stream (WHATWG rules: LF, CRLF or CR line ends; `:` comments;
    multi-line data). A trailing event without its blank line is reported, not dropped."""
    findings: list[Finding] = []
    text = raw.decode("utf-8", errors="replace").replace("\r\n", "\n").replace("\r", "\n")
    events: list[Event] = []
    name, data, pending = None, [], False
    for line in text.split("\n"):
        if line == "":
            if pending:
                events.append(Event(name, "\n".join(data)))
            name, data, pending = None, [], False
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "event":
            name, pending = value, True
        elif field == "data":
            data.append(value)
            pending = True
        elif field in ("id", "retry"):
            pass
        else:
            findings.append(Finding(FAIL, "SSE framing", "$", f"unknown SSE field `{field}`", example=snippet(line)))
    if pending:
        findings.append(Finding(FAIL, "SSE framing", "$", "the last event is not terminated by a blank line", example=snippet(data)))
        events.append(Event(name, "\n".join(data)))
    for i, e in enumerate(events):
        e.index = i
        if e.data and e.data != "[DONE]":
            try:
                e.json = json.loads(e.data)
            except ValueError:
                findings.append(Finding(FAIL, "SSE data: JSON", "$", "data is not JSON", where=f"event {i}", example=snippet(e.data)))
    return events, findings


def _f(rule, msg, ev: Event | None = None, value=None):
    where = f"event {ev.index} ({ev.kind})" if ev is not None else "stream"
    return Finding(FAIL, f"stream: {rule}", "$", msg, where=where, example=snippet(value if value is not None else (ev.json if ev else None)))


def _is_json_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


def chat_rules(events: list[Event], include_usage: bool) -> list[Finding]:
    """OpenAI Chat Completions chunks."""
    out: list[Finding] = []
    done = [e for e in events if e.data == "[DONE]"]
    errors = [e for e in events if isinstance(e.json, dict) and "error" in e.json]
    chunks = [e for e in events if isinstance(e.json, dict) and "error" not in e.json]
    if errors:
        tail = [e for e in events[errors[0].index + 1 :] if e.data != "[DONE]"]
        if tail:
            out.append(_f("error chunk", "an error chunk must end the stream", errors[0]))
    elif not done:
        out.append(_f("termination", "the stream ends without `data: [DONE]` (and without an error chunk)", events[-1] if events else None))
    if len(done) > 1 or (done and events[-1] is not done[0]):
        out.append(_f("termination", "`[DONE]` must come once, last", done[0]))
    for key in ("id", "created", "model"):
        values = {json.dumps(c.json.get(key)) for c in chunks}
        if len(values) > 1:
            out.append(_f(f"one {key}", f"chunks carry different `{key}` values: {sorted(values)}"))
    if include_usage and chunks and not errors:
        last = chunks[-1]
        if not isinstance(last.json.get("usage"), dict):
            out.append(_f("usage chunk", "include_usage was requested: the last chunk must carry `usage`", last))
        elif last.json.get("choices") != []:
            out.append(_f("usage chunk", "the usage chunk's `choices` must be empty", last))
    usage_chunks = chunks[:-1] if include_usage else chunks
    for c in usage_chunks:
        if c.json.get("usage") is not None:
            why = "only the last chunk carries usage" if include_usage else "usage was not requested (stream_options.include_usage)"
            out.append(_f("usage only last", why, c, c.json.get("usage")))
    # Tool-call deltas: the first one of each index names the call; arguments add up to JSON.
    calls: dict[int, dict] = {}
    for c in chunks:
        for choice in c.json.get("choices") or []:
            for tc in (choice.get("delta") or {}).get("tool_calls") or []:
                idx = tc.get("index")
                if idx not in calls:
                    fn = tc.get("function") or {}
                    if not tc.get("id") or tc.get("type") != "function" or not fn.get("name"):
                        out.append(_f("tool call delta", "the first delta of a tool call carries id, type and function.name", c, tc))
                    calls[idx] = {"args": ""}
                calls[idx]["args"] += (tc.get("function") or {}).get("arguments") or ""
    if not errors:
        for idx, call in calls.items():
            if not _is_json_object(call["args"]):
                out.append(_f("tool call arguments", f"tool call {idx}: the arguments deltas do not add up to a JSON object", value=call["args"]))
    return out


_TERMINAL = ("response.completed", "response.failed", "response.incomplete")


def _named_events(events: list[Event]) -> tuple[list[Event], list[Finding]]:
    """The JSON events, and a finding for each whose SSE `event:` name is not its type."""
    evs = [e for e in events if isinstance(e.json, dict)]
    out = [
        _f("event name", f"SSE `event: {e.event}` differs from the data's type `{e.kind}`", e)
        for e in evs
        if e.event is not None and e.event != e.kind
    ]
    if not evs:
        out.append(_f("events", "no event"))
    return evs, out


def responses_rules(events: list[Event]) -> list[Finding]:
    """OpenAI Responses events."""
    evs, out = _named_events(events)
    if not evs:
        return out
    seqs = [(e, e.json.get("sequence_number")) for e in evs]
    prev = None
    for e, n in seqs:
        if isinstance(n, int) and prev is not None and n <= prev:
            out.append(_f("sequence_number", f"sequence_number {n} after {prev}: must increase strictly", e))
        if isinstance(n, int):
            prev = n
    if evs[0].kind != "response.created":
        out.append(_f("first event", "the stream must start with response.created", evs[0]))
    terminal = [e for e in evs if e.kind in _TERMINAL]
    if len(terminal) != 1:
        out.append(_f("terminal event", f"exactly one of {list(_TERMINAL)} expected, got {len(terminal)}", terminal[1] if len(terminal) > 1 else evs[-1]))
    elif terminal[0] is not evs[-1]:
        out.append(_f("terminal event", f"{terminal[0].kind} must be the last event", evs[-1]))
    ids = {}
    for e in evs:
        r = e.json.get("response")
        if isinstance(r, dict):
            ids.setdefault(r.get("id"), e)
    if len(ids) > 1:
        out.append(_f("response id", f"events describe different responses: {sorted(map(str, ids))}"))
    # Output items: added once, then done once, deltas only in between.
    added: dict[int, dict] = {}
    finished: dict[int, dict] = {}
    texts: dict[tuple, str] = {}
    args: dict[str, str] = {}
    parts: dict[tuple, str] = {}
    for e in evs:
        j, k = e.json, e.kind
        oi = j.get("output_index")
        if k == "response.output_item.added":
            item = j.get("item") or {}
            if oi in added:
                out.append(_f("output_item.added", f"output_index {oi} announced twice", e))
            if oi != len(added):
                out.append(_f("output_index", f"items must be announced in order: expected output_index {len(added)}, got {oi}", e))
            added[oi] = item
        elif k == "response.output_item.done":
            item = j.get("item") or {}
            if oi not in added:
                out.append(_f("output_item.done", f"output_index {oi} done without output_item.added", e))
            elif added[oi].get("id") != item.get("id"):
                out.append(_f("item id", f"output_index {oi}: added as {added[oi].get('id')!r}, done as {item.get('id')!r}", e))
            if oi in finished:
                out.append(_f("output_item.done", f"output_index {oi} done twice", e))
            finished[oi] = item
        elif oi is not None and k.startswith("response."):
            if oi not in added or oi in finished:
                out.append(_f("item lifetime", f"{k} for output_index {oi} outside output_item.added … output_item.done", e))
            elif "item_id" in j and j["item_id"] != added[oi].get("id"):
                out.append(_f("item id", f"{k}: item_id {j['item_id']!r} is not output_index {oi}'s {added[oi].get('id')!r}", e))
            key = (oi, j.get("content_index"))
            if k == "response.content_part.added":
                parts[key] = "open"
            elif k == "response.content_part.done":
                if parts.get(key) != "open":
                    out.append(_f("content part", f"content_part.done for {key} without content_part.added", e))
                parts[key] = "done"
            elif k == "response.output_text.delta":
                if parts.get(key) != "open":
                    out.append(_f("content part", f"output_text.delta for {key} outside its content part", e))
                texts[key] = texts.get(key, "") + (j.get("delta") or "")
            elif k == "response.output_text.done":
                if texts.get(key, "") != j.get("text"):
                    out.append(_f("text done", "output_text.done's text is not the concatenated deltas", e, {"deltas": texts.get(key, ""), "text": j.get("text")}))
            elif k == "response.function_call_arguments.delta":
                args[oi] = args.get(oi, "") + (j.get("delta") or "")
            elif k == "response.function_call_arguments.done":
                if args.get(oi, "") != j.get("arguments") and args.get(oi) is not None:
                    out.append(_f("arguments done", "function_call_arguments.done is not the concatenated deltas", e, {"deltas": args.get(oi), "arguments": j.get("arguments")}))
    for oi in added:
        if oi not in finished and not (terminal and terminal[0].kind == "response.failed"):
            out.append(_f("output_item.done", f"output_index {oi} announced but never done"))
    for key, state in parts.items():
        if state == "open" and not (terminal and terminal[0].kind == "response.failed"):
            out.append(_f("content part", f"content part {key} never done"))
    if terminal and terminal[0].kind == "response.completed":
        final = (terminal[0].json.get("response") or {}).get("output")
        if isinstance(final, list):
            got = [i.get("id") for i in final if isinstance(i, dict)]
            want = [finished[i].get("id") for i in sorted(finished)]
            if got != want:
                out.append(_f("final output", f"response.completed's output ids {got} differ from the items done {want}", terminal[0]))
    return out


_DELTAS = {
    "text": ("text_delta", "citations_delta"),
    "tool_use": ("input_json_delta",),
    "server_tool_use": ("input_json_delta",),
    "thinking": ("thinking_delta", "signature_delta"),
    "redacted_thinking": (),
}


def anthropic_rules(events: list[Event]) -> list[Finding]:
    """Anthropic Messages events: message_start, content blocks (start, deltas inside the
    open block at its index, stop), message_delta, message_stop; `ping` anywhere; `error`
    ends a failed stream."""
    evs, out = _named_events(events)
    if not evs:
        return out
    state = "start"  # start -> message -> (block) -> delta -> stopped
    open_block, open_type, next_index, partial = None, None, 0, ""
    for e in evs:
        k, j = e.kind, e.json
        if k == "ping":
            continue
        if state == "stopped":
            out.append(_f("after message_stop", "nothing may follow message_stop", e))
            break
        if k == "error":
            if e is not evs[-1]:
                out.append(_f("error event", "an error event ends the stream", e))
            state = "errored"
            break
        if k == "message_start":
            if state != "start":
                out.append(_f("message_start", "message_start must come first, once", e))
            state = "message"
        elif state == "start":
            out.append(_f("message_start", f"{k} before message_start", e))
            state = "message"
        if k == "content_block_start":
            if state != "message":
                out.append(_f("content_block_start", "a block starts after message_delta", e))
            if open_block is not None:
                out.append(_f("content_block_start", f"block {j.get('index')} starts while block {open_block} is open", e))
            if j.get("index") != next_index:
                out.append(_f("block index", f"expected index {next_index}, got {j.get('index')}", e))
            open_block = j.get("index")
            open_type = (j.get("content_block") or {}).get("type")
            next_index = (j.get("index") if isinstance(j.get("index"), int) else next_index) + 1
            partial = ""
        elif k == "content_block_delta":
            if open_block is None or j.get("index") != open_block:
                out.append(_f("content_block_delta", f"delta for index {j.get('index')} while the open block is {open_block}", e))
            dtype = (j.get("delta") or {}).get("type")
            if open_type in _DELTAS and dtype not in _DELTAS[open_type]:
                out.append(_f("delta type", f"{dtype} inside a {open_type} block (allowed: {list(_DELTAS[open_type])})", e))
            if dtype == "input_json_delta":
                partial += (j.get("delta") or {}).get("partial_json") or ""
        elif k == "content_block_stop":
            if open_block is None or j.get("index") != open_block:
                out.append(_f("content_block_stop", f"stop for index {j.get('index')} while the open block is {open_block}", e))
            if open_type in ("tool_use", "server_tool_use") and partial and not _is_json_object(partial):
                out.append(_f("tool input", "the input_json_delta pieces do not add up to a JSON object", e, partial))
            open_block, open_type = None, None
        elif k == "message_delta":
            if open_block is not None:
                out.append(_f("message_delta", f"message_delta while block {open_block} is open", e))
            if state == "delta":
                out.append(_f("message_delta", "message_delta must come once", e))
            state = "delta"
        elif k == "message_stop":
            if state != "delta":
                out.append(_f("message_stop", "message_stop without message_delta before it", e))
            state = "stopped"
    if state not in ("stopped", "errored"):
        out.append(_f("termination", "the stream ends without message_stop (and without an error event)", evs[-1]))
    return out


def gemini_rules(events: list[Event]) -> list[Finding]:
    """Gemini `alt=sse`: every event one GenerateContentResponse; the finish reason comes
    with the last candidate chunk; a failure is an error object, last."""
    out: list[Finding] = []
    evs = [e for e in events if e.data]
    if not evs:
        return [_f("events", "no event")]
    for e in evs:
        if e.event is not None:
            out.append(_f("event name", f"Gemini events carry no `event:` field, got {e.event!r}", e))
    errors = [e for e in evs if isinstance(e.json, dict) and "error" in e.json]
    if errors and errors[0] is not evs[-1]:
        out.append(_f("error", "an error object ends the stream", errors[0]))
    chunks = [e for e in evs if isinstance(e.json, dict) and "error" not in e.json]
    with_cand = [e for e in chunks if e.json.get("candidates")]
    finished = [e for e in with_cand if any(c.get("finishReason") for c in e.json["candidates"] if isinstance(c, dict))]
    if not errors:
        if not finished:
            out.append(_f("finishReason", "no chunk carries a finishReason: the stream did not end", evs[-1]))
        elif finished[0] is not with_cand[-1]:
            out.append(_f("finishReason", "finishReason must come with the last candidate chunk", finished[0]))
    ids = {e.json.get("responseId") for e in chunks if e.json.get("responseId") is not None}
    if len(ids) > 1:
        out.append(_f("responseId", f"chunks carry different responseId values: {sorted(ids)}"))
    return out
