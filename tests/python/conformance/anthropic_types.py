"""Anthropic bodies checked against the official SDKs' own type definitions.

- Types and field names: the PyPI `anthropic` package (requests: the `MessageCreateParams`
  TypedDicts; responses: the pydantic models `Message`, `RawMessageStreamEvent`,
  `ErrorResponse`). Both are walked the same way, from their type hints, so unions are
  resolved by their `type` tag and every unknown key is seen (the pydantic models would
  silently keep it: they are `extra="allow"`).
- Which response fields must be present: the TypeScript SDK (specs/anthropic-ts-required.json).
  The Python models default every nullable field to None, so only the TS declarations say
  that `container`, `stop_details`, `usage.cache_creation`, ... are always sent (as null
  when empty).
- Each response is also parsed by pydantic itself (`model_validate`), as the SDK does.
"""

from __future__ import annotations

import collections.abc as _abc
import datetime as _dt
import json
import types as _pytypes
import typing
from functools import lru_cache
from pathlib import Path

import pydantic
import typing_extensions
from anthropic.types import Message, RawMessageStreamEvent
from anthropic.types.message_create_params import MessageCreateParamsNonStreaming, MessageCreateParamsStreaming
from anthropic.types.shared.error_response import ErrorResponse

from .findings import FAIL, Finding, json_path, snippet

TS_REQUIRED = Path(__file__).parent / "specs" / "anthropic-ts-required.json"


@lru_cache(maxsize=1)
def ts_required() -> dict[str, list[str]]:
    return json.loads(TS_REQUIRED.read_text())["required"]


def _camel(module_name: str) -> str:
    return "".join(p.capitalize() for p in module_name.split("_"))


def _ts_name(cls) -> str | None:
    """The TS declaration for a Python SDK class: same name, or Outer.Name for the nested
    types the Python SDK flattens into a module (raw_message_delta_event.Delta)."""
    req = ts_required()
    outer = _camel(cls.__module__.rsplit(".", 1)[-1])
    for name in (f"{outer}.{cls.__name__}", cls.__name__):
        if name in req:
            return name
    return None


def _is_typeddict(tp) -> bool:
    return isinstance(tp, type) and (typing.is_typeddict(tp) or typing_extensions.is_typeddict(tp))


def _is_model(tp) -> bool:
    return isinstance(tp, type) and issubclass(tp, pydantic.BaseModel)


_NONE = type(None)
_LISTS = {list, _abc.Iterable, _abc.Sequence, _abc.Collection}
_ANY = (typing.Any, object)


def _origin(tp):
    return typing_extensions.get_origin(tp)


def _strip(tp):
    """Annotated[T, ...] -> (T, metadata); Required/NotRequired -> T."""
    meta = ()
    while True:
        o = _origin(tp)
        if o is typing_extensions.Annotated or o is typing.Annotated:
            meta += tuple(tp.__metadata__)
            tp = tp.__origin__
        elif o in (typing_extensions.Required, typing_extensions.NotRequired, typing.ClassVar):
            tp = typing_extensions.get_args(tp)[0]
        else:
            return tp, meta


def _alias(meta) -> str | None:
    for m in meta:
        a = getattr(m, "alias", None)
        if isinstance(a, str):
            return a
    return None


@lru_cache(maxsize=None)
def _td_fields(td):
    """TypedDict -> {wire key: (type, required)}."""
    hints = typing_extensions.get_type_hints(td, include_extras=True)
    required = set(getattr(td, "__required_keys__", ()))
    ts = ts_required().get(_ts_name(td) or "", [])
    out = {}
    for name, tp in hints.items():
        inner, meta = _strip(tp)
        out[_alias(meta) or name] = (inner, name in required or name in ts)
    return out


@lru_cache(maxsize=None)
def _model_fields(model):
    """pydantic model -> {wire key: (type, required)}; required per the TS declaration when
    there is one (it is the stricter), else pydantic's."""
    ts = _ts_name(model)
    ts_req = set(ts_required()[ts]) if ts else None
    out = {}
    for name, f in model.model_fields.items():
        key = f.alias or name
        req = key in ts_req if ts_req is not None else f.is_required()
        out[key] = (f.annotation, req)
    return out, ts


def _tag_of(tp) -> tuple | None:
    """The literal values of a union member's `type` field, if it has one."""
    tp, _ = _strip(tp)
    fields = None
    if _is_model(tp):
        fields = _model_fields(tp)[0]
    elif _is_typeddict(tp):
        fields = _td_fields(tp)
    if not fields or "type" not in fields:
        return None
    lit, _ = _strip(fields["type"][0])
    if _origin(lit) is typing.Literal or _origin(lit) is typing_extensions.Literal:
        return typing_extensions.get_args(lit)
    return None


def _name(tp) -> str:
    tp, _ = _strip(tp)
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _flatten(members):
    """Union[A, Annotated[Union[B, C], ...]] -> [A, B, C]: nested unions are one union."""
    out = []
    for m in members:
        inner, _ = _strip(m)
        if _origin(inner) in (typing.Union, _pytypes.UnionType):
            out += _flatten(typing_extensions.get_args(inner))
        else:
            out.append(m)
    return out


def _kind_fits(tp, value) -> bool:
    """Whether a JSON value of this kind could be of type `tp` at all."""
    tp, _ = _strip(tp)
    o = _origin(tp)
    if tp in _ANY or isinstance(tp, typing.TypeVar):
        return True
    if isinstance(value, list):
        return o in _LISTS or getattr(o, "__name__", "") == "SequenceNotStr"
    if isinstance(value, dict):
        return _is_model(tp) or _is_typeddict(tp) or o in (dict, _abc.Mapping, _abc.MutableMapping)
    if isinstance(value, str):
        return tp in (str, _dt.datetime, _dt.date) or (o in (typing.Literal, typing_extensions.Literal) and any(isinstance(a, str) for a in typing_extensions.get_args(tp)))
    if isinstance(value, bool):
        return tp is bool or (o in (typing.Literal, typing_extensions.Literal) and any(isinstance(a, bool) for a in typing_extensions.get_args(tp)))
    if isinstance(value, (int, float)):
        return tp in (int, float) or (o in (typing.Literal, typing_extensions.Literal) and any(type(a) in (int, float) for a in typing_extensions.get_args(tp)))
    return True


class Walker:
    """Checks a JSON value against a type hint of the SDK. `unknown_level` says what a key
    the type does not declare is: FAIL (provider requests) or WARN (client responses)."""

    def __init__(self, unknown_level: str, sdk: str):
        self.unknown_level = unknown_level
        self.sdk = sdk
        self.findings: list[Finding] = []

    def fail(self, path, msg, value, rule="type"):
        self.findings.append(Finding(FAIL, f"{self.sdk}: {rule}", json_path(path), msg, example=snippet(value)))

    def check(self, tp, value, path=()):
        tp, meta = _strip(tp)
        o = _origin(tp)
        if tp in _ANY:
            return
        if tp is _NONE or tp is None:
            if value is not None:
                self.fail(path, f"expected null, got {type(value).__name__}", value)
            return
        if o is typing.Union or o is _pytypes.UnionType:
            return self._union(typing_extensions.get_args(tp), value, path)
        if o is typing.Literal or o is typing_extensions.Literal:
            allowed = typing_extensions.get_args(tp)
            if not any(value == a and type(value) is type(a) for a in allowed):
                self.fail(path, f"{snippet(value)} is not one of {list(allowed)}", value, "literal")
            return
        if tp is str:
            if not isinstance(value, str):
                self.fail(path, f"expected string, got {type(value).__name__}", value)
            return
        if tp is bool:
            if not isinstance(value, bool):
                self.fail(path, f"expected boolean, got {type(value).__name__}", value)
            return
        if tp is int:
            if isinstance(value, bool) or not isinstance(value, int):
                self.fail(path, f"expected integer, got {type(value).__name__}", value)
            return
        if tp is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                self.fail(path, f"expected number, got {type(value).__name__}", value)
            return
        if tp in (_dt.datetime, _dt.date):
            try:
                pydantic.TypeAdapter(tp).validate_python(value)
            except pydantic.ValidationError:
                self.fail(path, f"expected an RFC 3339 {tp.__name__}", value)
            return
        if _is_model(tp):
            return self._object(tp, _model_fields(tp)[0], value, path)
        if _is_typeddict(tp):
            return self._object(tp, _td_fields(tp), value, path)
        if o in _LISTS or getattr(o, "__name__", "") == "SequenceNotStr":
            if not isinstance(value, list):
                self.fail(path, f"expected array, got {type(value).__name__}", value)
                return
            (item,) = typing_extensions.get_args(tp) or (typing.Any,)
            for i, v in enumerate(value):
                self.check(item, v, path + (i,))
            return
        if o in (dict, _abc.Mapping, _abc.MutableMapping):
            if not isinstance(value, dict):
                self.fail(path, f"expected object, got {type(value).__name__}", value)
                return
            args = typing_extensions.get_args(tp)
            for k, v in value.items():
                if args:
                    self.check(args[1], v, path + (k,))
            return
        if isinstance(tp, typing.TypeVar):
            return
        raise TypeError(f"conformance suite: unhandled SDK type {tp!r} at {json_path(path)}")

    def _union(self, members, value, path):
        members = _flatten(members)
        if value is None:
            if _NONE in members:
                return
        # A tagged union: the member whose `type` literal is the value's.
        if isinstance(value, dict) and "type" in value:
            tags = [(m, _tag_of(m)) for m in members if m is not _NONE]
            tagged = [m for m, t in tags if t and value["type"] in t]
            if len(tagged) == 1 and all(t for _, t in tags):
                return self.check(tagged[0], value, path)
            if not tagged and all(t for _, t in tags):
                known = sorted(str(v) for m, t in tags if t for v in t)
                self.fail(path + ("type",), f"unknown type {snippet(value['type'])} (one of {known})", value, "union tag")
                return
        # Only one member of the value's JSON kind (str | list, say): that one judges.
        fitting = [m for m in members if m is not _NONE and _kind_fits(m, value)]
        if len(fitting) == 1:
            return self.check(fitting[0], value, path)
        # Otherwise the first member it fits; failing all, the closest one's complaints.
        best = None
        for m in members:
            if m is _NONE:
                continue
            sub = Walker(self.unknown_level, self.sdk)
            sub.check(m, value, path)
            fails = [f for f in sub.findings if f.level == FAIL]
            if not fails:
                self.findings.extend(sub.findings)
                return
            if best is None or len(fails) < len(best[1]):
                best = (m, fails)
        names = ", ".join(_name(m) for m in members)
        if value is None:
            self.fail(path, f"null is not allowed here (one of: {names})", value, "union")
        elif best and isinstance(value, dict) and len(best[1]) <= 3 and _origin(_strip(best[0])[0]) is None:
            self.findings.extend(best[1])
        else:
            self.fail(path, f"matches none of: {names}", value, "union")

    def _object(self, cls, fields, value, path):
        if not isinstance(value, dict):
            self.fail(path, f"expected object ({_name(cls)}), got {type(value).__name__}", value)
            return
        rule = _ts_name(cls) or _name(cls)
        for key, (tp, required) in fields.items():
            if key not in value:
                if required:
                    self.fail(path, f"`{key}` is required in {rule}", value, f"{rule}: required")
                continue
            self.check(tp, value[key], path + (key,))
        # A TypedDict the SDK marks `extra: allow` (InputSchemaTyped: a JSON Schema) is open.
        if (getattr(cls, "__pydantic_config__", None) or {}).get("extra") == "allow":
            return
        for key in value:
            if key not in fields:
                self.findings.append(
                    Finding(
                        self.unknown_level,
                        f"{self.sdk}: {rule}: unknown field",
                        json_path(path + (key,)),
                        f"field `{key}` is not defined by {_name(cls)}",
                        example=snippet({key: value[key]}),
                    )
                )


_SDK = "anthropic"


def _pydantic_parse(tp, value) -> list[Finding]:
    """Parse as the SDK's own model would: pydantic errors are failures."""
    try:
        pydantic.TypeAdapter(tp).validate_python(value)
    except pydantic.ValidationError as e:
        out = []
        for err in e.errors()[:5]:
            loc = [p for p in err["loc"] if not (isinstance(p, str) and (p[:1].isupper() or "[" in p))]
            out.append(Finding(FAIL, f"anthropic pydantic: {err['type']}", json_path(loc), err["msg"], example=snippet(err.get("input"))))
        return out
    return []


def check_request(body, unknown_level: str = FAIL) -> list[Finding]:
    tp = MessageCreateParamsStreaming if isinstance(body, dict) and body.get("stream") is True else MessageCreateParamsNonStreaming
    w = Walker(unknown_level, "anthropic")
    w.check(tp, body)
    return w.findings


def _response(tp, body, unknown_level):
    w = Walker(unknown_level, "anthropic")
    w.check(tp, body)
    if not any(f.level == FAIL for f in w.findings):
        w.findings += _pydantic_parse(tp, body)
    return w.findings


def check_message(body, unknown_level) -> list[Finding]:
    return _response(Message, body, unknown_level)


def check_event(body, unknown_level) -> list[Finding]:
    return _response(RawMessageStreamEvent, body, unknown_level)


def check_error(body, unknown_level) -> list[Finding]:
    return _response(ErrorResponse, body, unknown_level)


def anthropic_version() -> str:
    """The `anthropic-version` the installed SDK sends (and whose request types it ships)."""
    from anthropic._constants import ANTHROPIC_API_VERSION

    return ANTHROPIC_API_VERSION

