"""Typed results: what an audit of the daemon's folders found, and what a scenario measured."""
from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass
class Audit:
    """The fate of every file a scenario dropped, read from the daemon's folders.

    An input is *lost* when no report names it and it is neither in the inbox nor claimed;
    *duplicated* when more than one report (or output) exists for it; *corrupt* when its output
    does not decode to the size its report gives, its report does not parse, or the report's
    input checksum is not the dropped file's. *Temporary files left* are the daemon's
    `.purifyd-*` files in the outbox or failed/, journal entries and claimed files once the
    daemon is idle."""

    dropped: int = 0
    purified: int = 0
    failed: int = 0
    lost: list[str] = dataclasses.field(default_factory=list)
    duplicated: list[str] = dataclasses.field(default_factory=list)
    corrupt: list[str] = dataclasses.field(default_factory=list)
    temporary_left: list[str] = dataclasses.field(default_factory=list)
    unexpected: list[str] = dataclasses.field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.lost or self.duplicated or self.corrupt or self.temporary_left or self.unexpected)

    def as_dict(self) -> dict[str, Any]:
        return {
            "dropped": self.dropped, "purified": self.purified, "failed": self.failed,
            "lost": len(self.lost), "duplicated": len(self.duplicated), "corrupt": len(self.corrupt),
            "temporary_left": len(self.temporary_left), "unexpected": len(self.unexpected),
            "examples": {key: values[:5] for key, values in (
                ("lost", self.lost), ("duplicated", self.duplicated), ("corrupt", self.corrupt),
                ("temporary_left", self.temporary_left), ("unexpected", self.unexpected)) if values},
        }


@dataclasses.dataclass
class ScenarioResult:
    """One scenario: its audit, whether the daemon was alive (answering `status`) at the end,
    the checks it made beyond the audit (each a name and whether it held), and its figures."""

    name: str
    audit: Audit
    daemon_alive: bool
    checks: dict[str, bool] = dataclasses.field(default_factory=dict)
    figures: dict[str, Any] = dataclasses.field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None

    @property
    def passed(self) -> bool:
        return self.error is None and self.daemon_alive and self.audit.clean and all(self.checks.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "passed": self.passed, "daemon_alive": self.daemon_alive,
            "audit": self.audit.as_dict(), "checks": self.checks, "figures": self.figures,
            "seconds": round(self.seconds, 1), "error": self.error,
        }
