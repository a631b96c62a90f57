"""`python -m purifyd_torture --purifyd PATH [--quick] [--scenario NAME ...]`: runs the fault
scenarios against real purifyd processes and prints, per scenario, the files lost, duplicated,
corrupt and temporary files left, and whether the daemon stayed alive. Exit status 0 when every
scenario passed, 1 when one did not, 64 on bad usage, 77 when not run as root (tmpfs mounts)."""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import random
import shutil
import sys
import tempfile
import time

from .mounts import MountError
from .results import Audit, ScenarioResult
from .scenarios import FULL, QUICK, Context, Scenario, control, crowd, hostile, kill9, write_failures

ROOT = pathlib.Path(__file__).resolve().parents[2]

SCENARIOS: dict[str, Scenario] = {
    "kill9": kill9.run,
    "full-outbox": write_failures.full_outbox,
    "read-only": write_failures.read_only_remount,
    "control": control.run,
    "crowd": crowd.run,
    "hostile": hostile.run,
}
NEEDS_ROOT = {"full-outbox", "read-only"}


def table(results: list[ScenarioResult]) -> str:
    header = f"{'scenario':<32} {'files':>6} {'lost':>5} {'dup':>4} {'corrupt':>7} {'temp left':>9} {'alive':>5} {'checks':>7} {'s':>6}  result"
    rows = [header, "-" * len(header)]
    for result in results:
        audit = result.audit
        checks = f"{sum(result.checks.values())}/{len(result.checks)}"
        rows.append(f"{result.name:<32} {audit.dropped:>6} {len(audit.lost):>5} {len(audit.duplicated):>4} {len(audit.corrupt):>7} "
                    f"{len(audit.temporary_left):>9} {'yes' if result.daemon_alive else 'NO':>5} {checks:>7} {result.seconds:>6.0f}  "
                    f"{'pass' if result.passed else 'FAIL'}")
    return "\n".join(rows)


def explain(result: ScenarioResult) -> str:
    lines = []
    if result.error:
        lines.append(f"  error: {result.error[:1500]}")
    lines += [f"  check failed: {name}" for name, held in result.checks.items() if not held]
    for key, values in result.audit.as_dict()["examples"].items():
        lines.append(f"  {key}: {values}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(prog="purifyd_torture", description=__doc__)
    parser.add_argument("--purifyd", type=pathlib.Path, required=True, help="the purifyd binary (a release build)")
    parser.add_argument("--bundle", type=pathlib.Path, default=ROOT / "models" / "mnist")
    parser.add_argument("--data", type=pathlib.Path, default=pathlib.Path(os.environ.get("PURIFYD_DATA", ROOT.parent / "shared" / "data")),
                        help="the datasets folder holding mnist/test.npz (default $PURIFYD_DATA or ../shared/data; "
                             "without it the MNIST bundle's four reference digits are used)")
    parser.add_argument("--quick", action="store_true", help="smaller bursts and fewer rounds (a smoke run)")
    parser.add_argument("--scenario", action="append", choices=sorted(SCENARIOS), help="run only these (repeatable)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2, help="the engine's compute threads")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--work", type=pathlib.Path, help="scratch folder (default: a new one under /tmp, removed if all pass)")
    parser.add_argument("--results", type=pathlib.Path, default=ROOT / "var" / "torture" / "results.json")
    arguments = parser.parse_args()

    if not arguments.purifyd.is_file():
        parser.error(f"no purifyd binary at {arguments.purifyd}")
    names = arguments.scenario or list(SCENARIOS)
    if os.geteuid() != 0 and NEEDS_ROOT & set(names):
        print(f"purifyd_torture: {', '.join(sorted(NEEDS_ROOT & set(names)))} mount tmpfs file systems: run as root, "
              "or choose other scenarios with --scenario", file=sys.stderr)
        return 77

    work = arguments.work or pathlib.Path(tempfile.mkdtemp(prefix="purifyd-torture-"))
    sizes = QUICK if arguments.quick else FULL
    load_before = os.getloadavg()
    results: list[ScenarioResult] = []
    for name in names:
        context = Context(purifyd=arguments.purifyd.resolve(), bundle=arguments.bundle.resolve(), data=arguments.data,
                          work=work, sizes=sizes, rng=random.Random(f"{arguments.seed}-{name}"), threads=arguments.threads)
        print(f"== {name}", flush=True)
        started = time.monotonic()
        try:
            result = SCENARIOS[name](context)
        except MountError as error:
            result = ScenarioResult(name=name, audit=Audit(), daemon_alive=False, error=str(error))
        result.seconds = time.monotonic() - started
        results.append(result)
        print(table([result]).splitlines()[-1], flush=True)
        if not result.passed:
            print(explain(result), flush=True)

    print()
    print(table(results))
    summary = {
        "quick": arguments.quick, "seed": arguments.seed, "purifyd": str(arguments.purifyd), "threads": arguments.threads,
        "load_average_before": [round(value, 2) for value in load_before],
        "load_average_after": [round(value, 2) for value in os.getloadavg()],
        "cpus": os.cpu_count(), "passed": all(result.passed for result in results),
        "scenarios": [result.as_dict() for result in results],
    }
    arguments.results.parent.mkdir(parents=True, exist_ok=True)
    arguments.results.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print(f"\nload average {summary['load_average_before']} before, {summary['load_average_after']} after "
          f"({summary['cpus']} CPUs); details in {arguments.results}")
    if summary["passed"] and arguments.work is None:
        shutil.rmtree(work, ignore_errors=True)
    elif not summary["passed"]:
        print(f"the scratch folder is kept for inspection: {work}")
    return 0 if summary["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
