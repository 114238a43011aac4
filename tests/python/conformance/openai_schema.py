"""OpenAI bodies checked against OpenAI's published OpenAPI 3.1 document (specs/).

The document is turned into plain JSON Schema 2020-12 once, in two variants:

- *lax*: the document as published, with OpenAPI's `nullable: true` (which 2020-12 does
  not know and jsonschema would silently ignore) rewritten as a `null` alternative, and
  `oneOf` + `discriminator` read as the tagged union it means;
- *strict*: the same, plus `unevaluatedProperties: false` wherever an object is declared
  with properties. `unevaluatedProperties` (unlike `additionalProperties`) sees through
  `allOf` / `anyOf` / `$ref`, so an object made of several components is judged as the
  whole. Free-form objects (`additionalProperties: true`, maps, bare `{type: object}`)
  stay open.

A body that fails *lax* breaks the schema; a body that passes *lax* and fails *strict*
only carries fields the document does not define ("unknown fields").
Which schema applies is read from `paths` (request body, 200 JSON, 200 event stream,
429 error), not written here.
"""

from __future__ import annotations

import copy
import json
import re
from collections import defaultdict
from functools import lru_cache
from pathlib import Path

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from .findings import FAIL, Finding, json_path, snippet

SPEC = Path(__file__).parent / "specs" / "openai-openapi.json"
BASE = "urn:openai-openapi"

# Keywords whose value is a schema applying to a *different* instance location (a use
# site, where strictness is added) or to the same one (a composition member, where it
# must not be: a member only knows its own share of the properties).
_CHILD_MAPS = ("properties", "patternProperties")
_CHILD_AT = ("items", "additionalProperties", "unevaluatedItems", "contains", "additionalItems")
_SAME_LIST = ("allOf", "anyOf", "oneOf")
_SAME_ONE = ("not", "if", "then", "else")


@lru_cache(maxsize=1)
def _document():
    return json.loads(SPEC.read_text())


def _resolve(doc, ref: str):
    if not ref.startswith("#/"):
        raise ValueError(f"only local $ref expected in the OpenAPI document, got {ref}")
    node = doc
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _nullable(s: dict) -> dict:
    """OpenAPI 3.0's `nullable: true` as 2020-12 says it (jsonschema ignores the keyword)."""
    if "nullable" not in s:
        return s
    s = dict(s)
    if s.pop("nullable") is not True:
        return s
    t = s.get("type")
    if isinstance(t, (str, list)):
        types = [t] if isinstance(t, str) else list(t)
        if "null" not in types:
            types.append("null")
        s["type"] = types
        if "enum" in s and None not in s["enum"]:
            s["enum"] = list(s["enum"]) + [None]
        return s
    if "enum" in s:
        if None not in s["enum"]:
            s["enum"] = list(s["enum"]) + [None]
        return s
    if any(k in s for k in ("$ref", "allOf", "anyOf", "oneOf", "const")):
        return {"anyOf": [s, {"type": "null"}]}
    return s  # no type constraint at all: null is already allowed


class _Shapes:
    """Whether a schema declares a closed object shape ('closed'), allows free-form objects
    ('open'), or constrains no object at all ('none')."""

    def __init__(self, doc):
        self.doc = doc
        self.memo: dict[tuple, str] = {}

    def of(self, s, in_allof=False, stack=()):
        if s is True or s == {}:
            return "none" if in_allof else "open"
        if not isinstance(s, dict):
            return "none"
        ap = s.get("additionalProperties")
        if (ap is not None and ap is not False) or "patternProperties" in s:
            return "open"
        inter, union = list(s.get("allOf", [])), list(s.get("anyOf", [])) + list(s.get("oneOf", []))
        results = []
        if "$ref" in s:
            ref = s["$ref"]
            key = (ref, in_allof)
            if ref in stack:
                results.append("none")
            elif key in self.memo:
                results.append(self.memo[key])
            else:
                r = self.of(_resolve(self.doc, ref), in_allof, stack + (ref,))
                if not stack:  # a result cut short by a cycle is not kept
                    self.memo[key] = r
                results.append(r)
        results += [self.of(m, True, stack) for m in inter]
        results += [self.of(b, False, stack) for b in union]
        if "open" in results:
            return "open"
        if "properties" in s or "closed" in results:
            return "closed"
        if "$ref" in s or inter or union:
            return "none"
        t = s.get("type")
        object_possible = t is None or t == "object" or (isinstance(t, list) and "object" in t)
        if object_possible and not in_allof:
            return "open"  # a free-form object (or anything at all)
        return "none"


def _transform(s, strict: bool, shapes: _Shapes, use_site: bool):
    if not isinstance(s, dict):
        return s
    out = {}
    for k, v in s.items():
        if k in _CHILD_MAPS and isinstance(v, dict):
            out[k] = {n: _transform(x, strict, shapes, True) for n, x in v.items()}
        elif k in _CHILD_AT:
            out[k] = _transform(v, strict, shapes, True)
        elif k == "prefixItems":
            out[k] = [_transform(x, strict, shapes, True) for x in v]
        elif k in _SAME_LIST:
            out[k] = [_transform(x, strict, shapes, False) for x in v]
        elif k in _SAME_ONE:
            out[k] = _transform(v, strict, shapes, False)
        elif k == "$ref":
            out[k] = BASE + v  # absolute, so any sub-schema validates on its own
        else:
            out[k] = v
    if "oneOf" in out and "discriminator" in out:
        # A discriminated union: exactly one branch by construction. Read as anyOf so an
        # instance that also fits a sibling branch (the spec's branches are not closed)
        # is not reported as ambiguous.
        out["anyOf"] = out.pop("oneOf")
    out = _nullable(out)
    if strict and use_site and shapes.of(s) == "closed":
        out = {"allOf": [out], "unevaluatedProperties": False}
    return out


def _build(strict: bool):
    doc = _document()
    shapes = _Shapes(doc)
    comps = doc["components"]
    new = {"components": {"schemas": {n: _transform(s, strict, shapes, False) for n, s in comps["schemas"].items()}}}
    resource = Resource.from_contents(new, default_specification=DRAFT202012)
    return Registry().with_resource(BASE, resource), shapes, new


@lru_cache(maxsize=2)
def _registry(strict: bool):
    return _build(strict)


def roots(path: str) -> dict:
    """The component names `paths` gives for an endpoint: request, json, stream, error."""
    op = _document()["paths"][path]["post"]
    name = lambda schema: schema["$ref"].rsplit("/", 1)[1]  # noqa: E731
    ok = op["responses"]["200"]["content"]
    out = {
        "request": name(op["requestBody"]["content"]["application/json"]["schema"]),
        "response": name(ok["application/json"]["schema"]),
        "stream": name(ok["text/event-stream"]["schema"]),
    }
    err = op["responses"].get("429")
    if err and "$ref" in err:
        err = _resolve(_document(), err["$ref"])
    out["error"] = name(err["content"]["application/json"]["schema"]) if err else "ErrorResponse"
    return out


@lru_cache(maxsize=None)
def _validator(component: str, strict: bool):
    registry, shapes, _ = _registry(strict)
    root = {"$ref": f"{BASE}#/components/schemas/{component}"}
    if strict and shapes.of({"$ref": f"#/components/schemas/{component}"}) == "closed":
        root["unevaluatedProperties"] = False
    return Draft202012Validator(root, registry=registry)


def _component_of(err, component: str, strict: bool) -> str:
    """The innermost named component whose keyword failed, for the report. jsonschema's
    schema path does not record `$ref` hops, so a key missing from a node that has a
    `$ref` is looked up in the referenced component."""
    doc = _registry(strict)[2]  # the schema the error's path runs through
    node, name = _validator(component, strict).schema, component

    def hop(node, name):
        ref = node["$ref"][len(BASE):]
        return _resolve(doc, ref), ref.rsplit("/", 1)[1]

    for key in list(err.absolute_schema_path)[:-1]:  # the last key is the failed keyword
        while isinstance(node, dict) and key not in node and "$ref" in node:
            node, name = hop(node, name)
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            return name
    while isinstance(node, dict) and err.validator not in node and "$ref" in node:
        node, name = hop(node, name)
    # A strictness wrapper around a $ref (where unknown fields are caught) names its target.
    if isinstance(node, dict) and "unevaluatedProperties" in node:
        inner = node.get("allOf", [node])[0]
        if isinstance(inner, dict) and "$ref" in inner:
            name = inner["$ref"].rsplit("/", 1)[1]
    return name


_DISCRIMINATORS = ("type", "role", "object")


def _explain(err, prefer_unevaluated: bool):
    """Leaf errors of a failed anyOf/oneOf: those of the branch the instance meant (its
    discriminator matched), not a list of every branch it did not."""
    if err.validator not in ("anyOf", "oneOf") or not err.context:
        return [err]
    branches = defaultdict(list)
    for sub in err.context:
        branches[sub.schema_path[0]].append(sub)
    candidates = []
    for idx, subs in branches.items():
        mismatch = any(
            (len(e.relative_path) == 1 and e.relative_path[0] in _DISCRIMINATORS and e.validator in ("enum", "const"))
            or (len(e.relative_path) == 0 and e.validator == "type")
            for e in subs
        )
        if not mismatch:
            leaves = [leaf for e in subs for leaf in _explain(e, prefer_unevaluated)]
            candidates.append((idx, leaves))
    if not candidates:
        return [err]
    if prefer_unevaluated:
        only_unknown = [c for c in candidates if all(l.validator == "unevaluatedProperties" for l in c[1])]
        if only_unknown:
            candidates = only_unknown
    candidates.sort(key=lambda c: (-max(len(l.absolute_path) for l in c[1]), len(c[1])))
    return candidates[0][1]


_UNEXPECTED = re.compile(r"\((.*) (?:was|were) unexpected\)")


def _unexpected_names(err) -> list[str]:
    m = _UNEXPECTED.search(err.message)
    if not m:
        return []
    return re.findall(r"'((?:[^'\\]|\\.)*)'", m.group(1))


def check(component: str, instance, unknown_level: str = FAIL) -> list[Finding]:
    """Validate `instance` against components/schemas/`component`.

    Schema violations are failures; fields the document does not define are reported at
    `unknown_level` (FAIL for what a provider receives, WARN for what a client receives).
    """
    findings: list[Finding] = []
    lax = sorted(_validator(component, False).iter_errors(instance), key=lambda e: list(e.absolute_path))
    for err in lax:
        for leaf in _explain(err, False):
            findings.append(
                Finding(
                    FAIL,
                    f"openapi {_component_of(leaf, component, False)}: {leaf.validator}",
                    json_path(leaf.absolute_path),
                    leaf.message if len(leaf.message) < 400 else leaf.message[:400] + "…",
                    example=snippet(leaf.instance),
                )
            )
    if lax:
        return findings
    # A field unknown deep inside makes every enclosing strict wrapper fail too (a failed
    # subschema's annotations are dropped), so only the innermost unknown fields are
    # reported; they are removed and the body re-checked until nothing is left.
    work = copy.deepcopy(instance)
    for _ in range(50):
        leaves = [leaf for err in _validator(component, True).iter_errors(work) for leaf in _explain(err, True)]
        if not leaves:
            break
        strange = [l for l in leaves if l.validator != "unevaluatedProperties"]
        if strange:
            # Cannot happen when the lax pass succeeded, unless the strict variant is
            # wrong: reported as a problem of the suite rather than hidden.
            findings += [Finding(FAIL, "suite: strict-only error", json_path(l.absolute_path), l.message[:300]) for l in strange]
            break
        paths = [tuple(l.absolute_path) for l in leaves]
        innermost = [l for l, p in zip(leaves, paths) if not any(len(q) > len(p) and q[: len(p)] == p for q in paths)]
        removed = False
        for leaf in innermost:
            target = work
            for part in leaf.absolute_path:
                target = target[part]
            for name in _unexpected_names(leaf):
                if not isinstance(target, dict) or name not in target:
                    continue
                findings.append(
                    Finding(
                        unknown_level,
                        f"openapi {_component_of(leaf, component, True)}: unknown field",
                        json_path(list(leaf.absolute_path) + [name]),
                        f"field `{name}` is not defined by the schema",
                        example=snippet({name: target[name]}),
                    )
                )
                del target[name]
                removed = True
        if not removed:
            findings.append(Finding(FAIL, "suite: unknown field not located", "$", leaves[0].message[:300]))
            break
    return findings


def discriminated_branch(component: str, value: str):
    """The component of a union (e.g. ResponseStreamEvent) whose `type` is `value`."""
    doc = _document()
    union = _resolve(doc, f"#/components/schemas/{component}")
    for b in union.get("anyOf", []) + union.get("oneOf", []):
        if "$ref" not in b:
            continue
        target = _resolve(doc, b["$ref"])
        t = target.get("properties", {}).get("type", {})
        if value in t.get("enum", []) or t.get("const") == value:
            return b["$ref"].rsplit("/", 1)[1]
    return None

