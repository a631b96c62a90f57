"""Reads the daemon's folders after a scenario and accounts for every file it dropped."""
from __future__ import annotations

import collections
import hashlib
import io
import json
import os
import pathlib
from typing import Any

from PIL import Image

from .results import Audit

TEMPORARY_PREFIX = ".purifyd-"


def reports_in(folders: list[pathlib.Path]) -> tuple[dict[str, list[tuple[pathlib.Path, dict[str, Any]]]], list[str]]:
    """Every report `<output>.json` in `folders`, by the input name it gives, and the names of
    the ones that do not parse."""
    by_input: dict[str, list[tuple[pathlib.Path, dict[str, Any]]]] = collections.defaultdict(list)
    unreadable: list[str] = []
    for folder in folders:
        for entry in os.scandir(folder):
            if not entry.name.endswith(".json") or entry.name.startswith(TEMPORARY_PREFIX):
                continue
            path = pathlib.Path(entry.path)
            try:
                report = json.loads(path.read_bytes())
                by_input[report["input"]["name"]].append((path, report))
            except (ValueError, KeyError, TypeError):
                unreadable.append(entry.name)
    return by_input, unreadable


def failure_reports(failed: pathlib.Path) -> dict[str, list[dict[str, Any]]]:
    """The `.error.json` reports in failed/, by input name."""
    by_input: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    if not failed.exists():
        return by_input
    for entry in os.scandir(failed):
        if entry.name.endswith(".error.json") and not entry.name.startswith(TEMPORARY_PREFIX):
            report = json.loads(pathlib.Path(entry.path).read_bytes())
            by_input[report["input"]].append(report)
    return by_input


def output_problem(report_path: pathlib.Path, report: dict[str, Any], expected_sha256: str | None) -> str | None:
    """Why a purified output and its report do not agree, or None."""
    if report.get("status") != "purified":
        return f"status {report.get('status')}"
    output = report_path.with_name(report_path.name[: -len(".json")])
    try:
        payload = output.read_bytes()
    except OSError as error:
        return f"output unreadable: {error}"
    if len(payload) != report["output"]["bytes"]:
        return f"output has {len(payload)} bytes, report says {report['output']['bytes']}"
    try:
        image = Image.open(io.BytesIO(payload))
        image.load()
    except Exception as error:  # PIL raises many types for a corrupt image
        return f"output does not decode: {error}"
    if image.size != (report["output"]["width"], report["output"]["height"]):
        return f"output is {image.size}, report says {report['output']['width']}x{report['output']['height']}"
    if expected_sha256 is not None and report["input"].get("sha256") != expected_sha256:
        return "the report's input checksum is not the dropped file's"
    return None


def leftovers(outboxes: list[pathlib.Path], failed: pathlib.Path, spool: pathlib.Path) -> list[str]:
    """The daemon's temporary files, journal entries and claimed files still on disk."""
    left: list[str] = []
    for folder in [*outboxes, failed]:
        if folder.exists():
            left += [f"{folder.name}/{name}" for name in os.listdir(folder) if name.startswith(TEMPORARY_PREFIX)]
    for sub in ("claimed", "journal"):
        folder = spool / sub
        if folder.exists():
            left += [f"spool/{sub}/{name}" for name in os.listdir(folder)]
    return left


def orphan_outputs(outboxes: list[pathlib.Path]) -> list[str]:
    """Images in the outbox without their report (the report is written last, so none should
    remain once the daemon is idle)."""
    orphans = []
    for folder in outboxes:
        names = set(os.listdir(folder))
        orphans += [name for name in names if not name.endswith(".json") and not name.startswith(TEMPORARY_PREFIX)
                    and f"{name}.json" not in names]
    return orphans


def audit_digits(expected: dict[str, str], outboxes: list[pathlib.Path], failed: pathlib.Path, spool: pathlib.Path,
                 inbox: pathlib.Path, accounted_elsewhere: set[str] = frozenset()) -> Audit:
    """Each dropped digit (name → SHA-256) must have exactly one purified output and report,
    uncorrupted; nothing may be left in the inbox, claimed, journaled or half written. Reports
    for `accounted_elsewhere` inputs are left to the caller."""
    reports, unreadable = reports_in(outboxes)
    failures = failure_reports(failed)
    audit = Audit(dropped=len(expected))
    audit.corrupt += [f"{name}: report does not parse" for name in unreadable]
    for name, sha in expected.items():
        found = reports.get(name, [])
        failed_reports = failures.get(name, [])
        if len(found) + len(failed_reports) == 0:
            audit.lost.append(name)
            continue
        if len(found) + len(failed_reports) > 1:
            audit.duplicated.append(f"{name}: {len(found)} reports, {len(failed_reports)} failure reports")
        if failed_reports:
            audit.failed += 1
            audit.unexpected.append(f"{name} failed: {failed_reports[0]['error']}")
        for path, report in found:
            audit.purified += 1
            if problem := output_problem(path, report, sha):
                audit.corrupt.append(f"{name}: {problem}")
    audit.unexpected += [f"report for an input never dropped: {name}" for name in reports
                         if name not in expected and name not in accounted_elsewhere]
    audit.unexpected += [f"output without a report: {name}" for name in orphan_outputs(outboxes)]
    audit.temporary_left = leftovers(outboxes, failed, spool)
    still = [name for name in os.listdir(inbox) if name in expected]
    audit.unexpected += [f"still in the inbox: {name}" for name in still]
    return audit


def sha256_of(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
