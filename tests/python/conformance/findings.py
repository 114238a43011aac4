"""What every checker returns: a list of findings, each a failure or a warning."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

FAIL = "fail"
WARN = "warn"


@dataclass
class Finding:
    level: str  # FAIL or WARN
    rule: str  # which definition was broken, e.g. "openapi Response: required"
    path: str  # JSON path inside the checked document, e.g. "$.output[0].status"
    message: str
    where: str = ""  # which document of the exchange: "response", "event 3 (response.created)", ...
    example: str = ""  # the offending JSON, shortened

    def describe(self) -> str:
        at = f"{self.where} " if self.where else ""
        ex = f"  e.g. {self.example}" if self.example else ""
        return f"[{self.level}] {at}{self.path}: {self.message} ({self.rule}){ex}"


def snippet(value, limit: int = 240) -> str:
    """A short JSON rendering of the offending value for the report."""
    try:
        text = json.dumps(value, ensure_ascii=False, sort_keys=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def json_path(parts) -> str:
    out = "$"
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out


@dataclass
class Checked:
    """Findings for one side of one exchange, plus how many documents were validated."""

    findings: list = field(default_factory=list)
    documents: int = 0

    def add(self, findings, where: str = ""):
        for f in findings:
            if where and not f.where:
                f.where = where
            self.findings.append(f)

    @property
    def failures(self):
        return [f for f in self.findings if f.level == FAIL]

    @property
    def warnings(self):
        return [f for f in self.findings if f.level == WARN]
