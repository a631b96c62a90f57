"""A corpus of hostile inbox entries (inputs.hostile_corpus and place_hostile), followed by
ordinary digits: each entry must end as its kind requires (purified, in failed/ with a report,
or left alone), exactly once, without the daemon reading through a link or blocking on a FIFO,
and the digits after them must all be purified."""
from __future__ import annotations

import collections
import os
import time

from ..audit import audit_digits, failure_reports, output_problem, reports_in
from ..daemon import DaemonError, Layout
from ..inputs import FAILED, PURIFIED, STAYS, hostile_corpus, place_hostile, stage_digits
from ..results import Audit, ScenarioResult
from . import Context, drop_in_background, wait_for_reports


def reported_name(raw: bytes) -> str:
    """The name a report gives for an inbox entry: a name that is not UTF-8 is renamed first,
    each byte outside a valid UTF-8 sequence written `%XX`."""
    decoded = raw.decode("utf-8", errors="surrogateescape")
    return "".join(f"%{ord(c) - 0xDC00:02X}" if 0xDC80 <= ord(c) <= 0xDCFF else c for c in decoded)


def run(context: Context) -> ScenarioResult:
    root = context.work / "hostile"
    layout = Layout.under(root)
    expected_digits = stage_digits(context.data, layout.staging, 200, prefix="after-hostile")
    daemon = context.daemon(layout)
    result = ScenarioResult(name="hostile files", audit=Audit(), daemon_alive=False)
    corpus = hostile_corpus(context.data, context.rng)
    entries = []
    try:
        daemon.start()
        entries = place_hostile(layout.inbox, layout.staging, corpus)
        must_report = [entry for entry in entries if entry.expect != STAYS]
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and daemon.pid is not None:
            purified, _ = reports_in([layout.outbox])
            failed = failure_reports(layout.failed)
            if sum(reported_name(entry.name) in purified or reported_name(entry.name) in failed for entry in must_report) == len(must_report):
                break
            time.sleep(0.5)
        drop_in_background(layout.staging, layout.inbox, sorted(expected_digits)).join()
        wait_for_reports(daemon, [layout.outbox], len(expected_digits), timeout=300)
        result.daemon_alive = daemon.alive()
        exit_status = daemon.drain_and_stop()
        result.checks["drain --exit ends with status 0"] = exit_status == 0
    except DaemonError as error:
        result.error = str(error)
    finally:
        daemon.terminate()

    hostile_names = {reported_name(entry.name) for entry in entries}
    audit = audit_digits(expected_digits, [layout.outbox], layout.failed, layout.spool, layout.inbox, hostile_names)
    purified, _ = reports_in([layout.outbox])
    failed = failure_reports(layout.failed)
    audit.dropped += len(entries)
    remaining = set(os.listdir(os.fsencode(layout.inbox)))
    outcomes: collections.Counter[str] = collections.Counter()
    for entry in entries:
        name = reported_name(entry.name)
        outputs, failures = len(purified.get(name, [])), len(failed.get(name, []))
        audit.purified += outputs
        audit.failed += failures
        outcome = "purified" if outputs and not failures else "failed" if failures and not outputs else "none" if not outputs + failures else "both"
        outcomes[f"{entry.kind}: {outcome}"] += 1
        if entry.expect == STAYS:
            if outputs + failures or entry.name not in remaining:
                audit.unexpected.append(f"{name!r} ({entry.kind}) was taken; it must stay in the inbox")
            continue
        if outputs + failures == 0:
            audit.lost.append(f"{name!r} ({entry.kind})")
        elif outputs + failures > 1:
            audit.duplicated.append(f"{name!r} ({entry.kind}): {outputs} outputs, {failures} failure reports")
        elif (entry.expect == PURIFIED and not outputs) or (entry.expect == FAILED and not failures):
            reason = failed[name][0]["error"] if failures else "purified"
            audit.unexpected.append(f"{name!r} ({entry.kind}) must be {entry.expect}: {reason}")
        if entry.name in remaining or os.fsencode(name) in remaining:
            audit.unexpected.append(f"{name!r} ({entry.kind}) is still in the inbox as well")
    for name in hostile_names & set(purified):
        for path, report in purified[name]:
            if problem := output_problem(path, report, None):
                audit.corrupt.append(f"{name!r}: {problem}")
    secret = (layout.staging / "secret.txt").read_text()
    result.checks["symlink targets untouched"] = secret == "not for purifyd\n" and (layout.staging / "outside.png").exists()
    result.audit = audit
    result.figures = {"hostile_entries": len(entries), "outcomes": dict(sorted(outcomes.items())),
                      "by_expectation": dict(collections.Counter(entry.expect for entry in entries))}
    return result

