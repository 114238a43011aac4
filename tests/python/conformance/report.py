"""The conformance table (client × provider) and the list of distinct violations.

Filled by test_conformance.py as exchanges run; written to target/conformance.md and
printed in pytest's terminal summary (conftest.py).
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

from .cases import CLIENTS, PROVIDERS, pairs
from .findings import FAIL, WARN

EXCHANGES: dict[str, object] = {}  # exchange id -> Exchange
SELF_CHECKS: dict[str, list] = {}  # self-check id -> failures
STARTED_AT: list[float] = []
OUTPUT = Path(__file__).resolve().parents[3] / "target" / "conformance.md"


def record(x):
    EXCHANGES[x.id] = x


def _cell(client, provider):
    xs = [x for x in EXCHANGES.values() if x.client == client and x.provider == provider]
    if not xs:
        return None
    c_fail = sum(1 for x in xs if x.client_side.failures)
    p_fail = sum(1 for x in xs if x.provider_side.failures)
    warns = sum(len(x.client_side.warnings) + len(x.provider_side.warnings) for x in xs)
    return {
        "n": len(xs),
        "client": (len(xs) - c_fail, c_fail),
        "provider": (len(xs) - p_fail, p_fail),
        "warnings": warns,
        "docs": sum(x.client_side.documents + x.provider_side.documents for x in xs),
    }


def table() -> str:
    lines = [
        "| client \\ provider | " + " | ".join(PROVIDERS) + " |",
        "|---|" + "---|" * len(PROVIDERS),
    ]
    valid = set(pairs())
    for c in CLIENTS:
        row = [c]
        for p in PROVIDERS:
            cell = _cell(c, p) if (c, p) in valid else None
            if (c, p) not in valid:
                row.append("n/a")
            elif cell is None:
                row.append("not run")
            else:
                cp, cf = cell["client"]
                pp, pf = cell["provider"]
                row.append(f"client {cp}✓ {cf}✗ · provider {pp}✓ {pf}✗ · {cell['warnings']} warn")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def totals() -> dict:
    xs = list(EXCHANGES.values())
    return {
        "exchanges": len(xs),
        "documents": sum(x.client_side.documents + x.provider_side.documents for x in xs),
        "client_fail": sum(1 for x in xs if x.client_side.failures),
        "provider_fail": sum(1 for x in xs if x.provider_side.failures),
        "warnings": sum(len(x.client_side.warnings) + len(x.provider_side.warnings) for x in xs),
    }


_INDEX = re.compile(r"\[\d+\]")
_EVENT = re.compile(r"^event \d+ \((.*)\)$")


def _norm_where(where: str) -> str:
    m = _EVENT.match(where or "")
    return f"event {m.group(1)}" if m else (where or "")


def distinct(level: str):
    """Findings grouped by (side, protocol, document, path, rule, message): one line each,
    with the exchanges it was seen in and one example."""
    groups = defaultdict(lambda: {"cells": [], "example": "", "message": ""})
    for x in EXCHANGES.values():
        for side_name, side, proto in (("client", x.client_side, x.client), ("provider", x.provider_side, x.provider)):
            for f in side.findings:
                if f.level != level:
                    continue
                msg = re.sub(r"\d{6,}", "N", f.message)
                key = (side_name, proto, _norm_where(f.where), _INDEX.sub("[*]", f.path), f.rule, msg)
                g = groups[key]
                g["cells"].append(f"{x.client}/{x.provider}/{x.case.name}")
                g["example"] = g["example"] or f.example
    return sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][4], kv[0][3]))


def _cells_summary(cells):
    by_pair = defaultdict(list)
    for c in dict.fromkeys(cells):  # unique, in order
        client, provider, case = c.split("/")
        by_pair[(client, provider)].append(case)
    return "; ".join(f"{c}→{p}: {', '.join(cs)}" for (c, p), cs in sorted(by_pair.items()))


def markdown(elapsed: float | None = None) -> str:
    t = totals()
    out = ["# Wire conformance", ""]
    out.append(
        f"{t['exchanges']} exchanges, {t['documents']} documents validated"
        + (f", {elapsed:.1f} s" if elapsed else "")
        + f". Exchanges with client-side failures: {t['client_fail']}; with provider-side failures: "
        f"{t['provider_fail']}; warnings: {t['warnings']}."
    )
    out += ["", "Counts per cell are exchanges (one per case): ✓ no failure on that side, ✗ at least one. "
            "n/a: the `openai-responses` provider (`responses_api: true`) differs from `openai` only for Responses clients.",
            "", table(), ""]
    failing_self = {k: v for k, v in SELF_CHECKS.items() if v}
    if failing_self:
        out += ["## Suite self-checks failing (requests we send, answers the mock sends)", ""]
        out += [f"- {k}: {v[0].describe()}" for k, v in sorted(failing_self.items())]
        out.append("")
    for level, title in ((FAIL, "Violations"), (WARN, "Warnings")):
        groups = distinct(level)
        out += [f"## {title} ({len(groups)} distinct)", ""]
        for (side, proto, where, path, rule, msg), g in groups:
            out.append(f"- **{side} side ({proto})** {where} `{path}` — {msg} [{rule}]")
            if g["example"]:
                out.append(f"  - example: `{g['example']}`")
            n = len(set(g["cells"]))
            out.append(f"  - {len(g['cells'])}× in {n} exchange(s): {_cells_summary(g['cells'])}")
        out.append("")
    refused = [x for x in EXCHANGES.values() if x.note]
    if refused:
        out += ["## Refused by the gateway", ""]
        out += [f"- {x.id}: {x.note}" for x in sorted(refused, key=lambda x: x.id)]
        out.append("")
    return "\n".join(out)


def write(elapsed: float | None = None) -> Path:
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(markdown(elapsed))
    return OUTPUT
