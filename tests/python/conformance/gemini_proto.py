"""Gemini bodies checked against Google's own protobuf definitions.

- Types: the `google-ai-generativelanguage` package (google.ai.generativelanguage_v1beta),
  whose messages are parsed with `json_format.ParseDict(..., ignore_unknown_fields=False)`,
  the proto3 JSON mapping the REST API uses (enum names, base64 bytes, int64 as strings
  or numbers, Struct/Value for free JSON).
- Unknown fields: ParseDict stops at the first one, so the message descriptors are also
  walked to name them all (FAIL in provider requests, WARN in client responses); a
  client response in snake_case, which parsers accept but proto3 JSON printers never
  write, is a warning.
- Required fields: the `(google.api.field_behavior) = REQUIRED` annotations, read from
  the .proto files in specs/googleapis (the compiled package drops them).
- Errors: the REST error body `{"error": google.rpc.Status}` with `status` a
  google.rpc.Code name; the HTTP status each code maps to is read from code.proto.
"""

from __future__ import annotations

import copy
import re
from functools import lru_cache
from pathlib import Path

from google.ai import generativelanguage_v1beta as glm
from google.protobuf import json_format
from google.rpc import code_pb2, error_details_pb2, status_pb2  # noqa: F401  (registers ErrorInfo & co. for Any)

from .findings import FAIL, WARN, Finding, json_path, snippet

PROTOS = Path(__file__).parent / "specs" / "googleapis"
V1BETA = PROTOS / "google" / "ai" / "generativelanguage" / "v1beta"

_TOKEN = re.compile(r'//[^\n]*|/\*.*?\*/|"(?:\\.|[^"\\])*"|[A-Za-z_][\w.]*|-?\d+|[{}\[\]();=<>,]', re.S)
_WELL_KNOWN = {"google.protobuf." + n for n in ("Struct", "Value", "ListValue", "Any", "Timestamp", "Duration", "FieldMask")}


def _parse_proto(path: Path):
    """A small reader for .proto files: message name -> {field: [field_behavior, ...]}.
    Enough for the googleapis files (messages, nested messages, enums, oneofs, maps)."""
    toks = [t for t in _TOKEN.findall(path.read_text()) if not t.startswith(("//", "/*"))]
    behaviors: dict[str, dict[str, list[str]]] = {}
    stack: list[tuple[str, str]] = []  # (kind, full name)
    pkg, i = "", 0
    while i < len(toks):
        t = toks[i]
        if t == "package" and not stack:
            pkg, i = toks[i + 1], i + 3
            continue
        if t in ("syntax", "import", "option", "reserved", "extensions"):
            while toks[i] != ";":
                i += 1
            i += 1
            continue
        if t in ("message", "enum", "service", "oneof") and i + 2 < len(toks) and toks[i + 2] == "{":
            if t == "oneof":
                full = stack[-1][1]
            else:
                outer = [n for k, n in stack if k == "message"]
                full = (outer[-1] if outer else pkg) + "." + toks[i + 1]
            stack.append((t, full))
            if t == "message":
                behaviors[full] = {}
            i += 3
            continue
        if t == "}":
            stack.pop()
            i += 1
            continue
        if stack and stack[-1][0] in ("service", "enum"):
            # rpc definitions (with their option blocks) and enum values carry no fields
            depth = 0
            while i < len(toks):
                if toks[i] == "{":
                    depth += 1
                elif toks[i] == "}":
                    if depth == 0:
                        break
                    depth -= 1
                    if depth == 0:
                        i += 1
                        break
                elif toks[i] == ";" and depth == 0:
                    i += 1
                    break
                i += 1
            continue
        j = i
        while toks[j] != ";":
            j += 1
        field = toks[i:j]
        if field[0] in ("repeated", "optional"):
            field = field[1:]
        if field[0] == "map":
            field = ["map"] + field[field.index(">") + 1 :]
        name = field[1]
        opts = " ".join(field[3:])
        message = [n for k, n in stack if k == "message"][-1]
        behaviors[message][name] = re.findall(r"field_behavior \) = (\w+)", opts)
        i = j + 1
    return behaviors


@lru_cache(maxsize=1)
def field_behaviors():
    out = {}
    for p in sorted(V1BETA.glob("*.proto")):
        out.update(_parse_proto(p))
    return out


@lru_cache(maxsize=1)
def http_mapping() -> dict[str, int]:
    """google.rpc.Code name -> the HTTP status code.proto documents for it."""
    text = (PROTOS / "google" / "rpc" / "code.proto").read_text()
    out, pending = {}, None
    for line in text.splitlines():
        m = re.search(r"HTTP Mapping: (\d{3})", line)
        if m:
            pending = int(m.group(1))
        m = re.match(r"\s*([A-Z_]+) = \d+;", line)
        if m:
            if pending is not None:
                out[m.group(1)] = pending
            pending = None
    return out


def _proto_name(field) -> str:
    # proto-plus renames fields that clash with Python names (`type` -> `type_`); the
    # wire name is the .proto one.
    return field.name[:-1] if field.name.endswith("_") else field.name


def _repeated(f) -> bool:
    rep = getattr(f, "is_repeated", None)  # protobuf >= 6 (`label` is gone in 7)
    return rep if rep is not None else f.label == f.LABEL_REPEATED


class _Walker:
    def __init__(self, unknown_level: str, response: bool):
        self.unknown_level = unknown_level
        self.response = response
        self.findings: list[Finding] = []

    def message(self, desc, value, path):
        if not isinstance(value, dict):
            return  # ParseDict reports the type
        by_key = {}
        for f in desc.fields:
            by_key[f.json_name] = f
            by_key[_proto_name(f)] = f
        required = [n for n, b in field_behaviors().get(desc.full_name, {}).items() if "REQUIRED" in b]
        for name in required:
            f = desc.fields_by_name.get(name) or desc.fields_by_name.get(name + "_")
            if f is not None and f.json_name not in value and name not in value:
                self.findings.append(
                    Finding(FAIL, f"proto {desc.name}: REQUIRED", json_path(path), f"`{f.json_name}` is REQUIRED (field_behavior)", example=snippet(value))
                )
        seen_oneofs = {}
        for key, v in value.items():
            f = by_key.get(key)
            if f is None:
                self.findings.append(
                    Finding(
                        self.unknown_level,
                        f"proto {desc.name}: unknown field",
                        json_path(path + [key]),
                        f"field `{key}` is not in {desc.full_name}",
                        example=snippet({key: v}),
                    )
                )
                continue
            if self.response and key != f.json_name:
                self.findings.append(
                    Finding(WARN, "proto3 JSON: lowerCamelCase names", json_path(path + [key]), f"printed as `{key}`, proto3 JSON prints `{f.json_name}`")
                )
            if f.containing_oneof is not None and v is not None:
                other = seen_oneofs.setdefault(f.containing_oneof.name, key)
                if other != key:
                    self.findings.append(
                        Finding(FAIL, f"proto {desc.name}: oneof {f.containing_oneof.name}", json_path(path), f"both `{other}` and `{key}` set", example=snippet(value))
                    )
            self.field(f, v, path + [key])

    def field(self, f, v, path):
        if f.message_type is None or f.message_type.full_name in _WELL_KNOWN:
            return
        if f.message_type.GetOptions().map_entry:
            vf = f.message_type.fields_by_name["value"]
            if isinstance(v, dict) and vf.message_type is not None:
                for k, item in v.items():
                    self._value(vf, item, path + [k])
            return
        if _repeated(f):
            if isinstance(v, list):
                for i, item in enumerate(v):
                    self.message(f.message_type, item, path + [i])
            return
        self.message(f.message_type, v, path)

    def _value(self, vf, item, path):
        if vf.message_type is not None and vf.message_type.full_name not in _WELL_KNOWN:
            self.message(vf.message_type, item, path)


_PARSE_AT = re.compile(r'at "([^"]*)"')


def _parse(pb_cls, value, level: str, unknown_level: str) -> list[Finding]:
    try:
        json_format.ParseDict(copy.deepcopy(value), pb_cls(), ignore_unknown_fields=False)
        return []
    except json_format.ParseError as e:
        first = str(e)
    if "has no field named" in first:
        # Already named by the walker; look for real type errors past the unknown fields.
        try:
            json_format.ParseDict(copy.deepcopy(value), pb_cls(), ignore_unknown_fields=True)
            return []
        except json_format.ParseError as e:
            first = str(e)
    at = _PARSE_AT.search(first)
    msg = first.split("\n")[0]
    return [Finding(level, "proto3 JSON: ParseDict", at.group(1) if at else "$", msg[:400])]


def check(message_cls, value, unknown_level: str, response: bool, path_fields: dict | None = None) -> list[Finding]:
    """Validate `value` (a JSON body) as the proto-plus message `message_cls`.

    `path_fields` are fields the REST API takes from the URL (GenerateContentRequest.model).
    """
    if path_fields and isinstance(value, dict):
        value = {**path_fields, **value}
    pb_cls = message_cls.pb()
    w = _Walker(unknown_level, response)
    if not isinstance(value, dict):
        return [Finding(FAIL, f"proto {pb_cls.DESCRIPTOR.name}", "$", f"expected a JSON object, got {type(value).__name__}", example=snippet(value))]
    w.message(pb_cls.DESCRIPTOR, value, [])
    return w.findings + _parse(pb_cls, value, FAIL, unknown_level)


def check_request(body, model: str) -> list[Finding]:
    return check(glm.GenerateContentRequest, body, FAIL, False, {"model": f"models/{model}"})


def check_response(body, unknown_level: str) -> list[Finding]:
    return check(glm.GenerateContentResponse, body, unknown_level, True)


def check_error(body, unknown_level: str, http_status: int | None = None) -> list[Finding]:
    """`{"error": {"code", "message", "status", "details"}}`: google.rpc.Status plus the
    Code name, as every Google REST API answers errors."""
    out: list[Finding] = []
    if not isinstance(body, dict) or not isinstance(body.get("error"), dict):
        return [Finding(FAIL, "google.rpc error body", "$", "expected {\"error\": {...}}", example=snippet(body))]
    for key in body:
        if key != "error":
            out.append(Finding(unknown_level, "google.rpc error body: unknown field", f"$.{key}", f"field `{key}` beside `error`"))
    err = dict(body["error"])
    status = err.pop("status", None)
    names = {v.name for v in code_pb2.Code.DESCRIPTOR.values}
    if status is None:
        out.append(Finding(FAIL, "google.rpc error body: status", "$.error", "`status` (a google.rpc.Code name) is missing", example=snippet(body)))
    elif status not in names:
        out.append(Finding(FAIL, "google.rpc.Code", "$.error.status", f"{snippet(status)} is not a google.rpc.Code name", example=snippet(status)))
    for need in ("code", "message"):
        if need not in err:
            out.append(Finding(FAIL, "google.rpc.Status", "$.error", f"`{need}` is missing", example=snippet(body)))
    w = _Walker(unknown_level, True)
    w.message(status_pb2.Status.DESCRIPTOR, err, ["error"])
    out += w.findings
    out += _parse(status_pb2.Status, err, FAIL, unknown_level)
    code = err.get("code")
    mapped = http_mapping().get(status) if isinstance(status, str) else None
    if isinstance(code, int) and http_status is not None and code != http_status:
        out.append(Finding(FAIL, "google.rpc error body: code", "$.error.code", f"code {code} differs from the HTTP status {http_status}"))
    if mapped is not None and isinstance(code, int) and mapped != code:
        out.append(Finding(WARN, "google.rpc.Code HTTP mapping (code.proto)", "$.error.status", f"{status} maps to HTTP {mapped}, the error says {code}"))
    return out
