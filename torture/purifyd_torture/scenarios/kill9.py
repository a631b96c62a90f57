"""kill -9 at random moments during a burst: mid-commit, mid-claim, during recovery and
model loading. Afterwards every file must have exactly one intact output and report."""
from __future__ import annotations

import time

from ..audit import audit_digits
from ..daemon import DaemonError, Layout
from ..inputs import stage_digits
from ..results import Audit, ScenarioResult
from . import Context, count_reports, drop_in_background, wait_for_reports


def run(context: Context) -> ScenarioResult:
    files, rounds = context.sizes.burst_files, context.sizes.kill_rounds
    layout = Layout.under(context.work / "kill9")
    expected = stage_digits(context.data, layout.staging, files)
    daemon = context.daemon(layout, queue_capacity=64)
    result = ScenarioResult(name="kill -9 during a burst", audit=Audit(dropped=files), daemon_alive=False)
    kills: list[dict] = []
    started = time.monotonic()
    try:
        daemon.start()
        dropper = drop_in_background(layout.staging, layout.inbox, sorted(expected))
        for round_index in range(rounds):
            # Every fourth kill lands while the daemon starts: loading models, replaying journals,
            # requeueing claimed files. The others are spread over the burst by progress.
            if round_index % 4 == 3:
                daemon.start(wait=False)
                time.sleep(context.rng.uniform(0.0, 1.5))
                moment = "start-up"
            else:
                if daemon.pid is None:
                    daemon.start()
                target = files * (round_index + 1) // (rounds + 2)
                wait_for_reports(daemon, [layout.outbox], target, timeout=600)
                time.sleep(context.rng.uniform(0.0, 0.4))
                moment = "burst"
            done = count_reports(layout.outbox)
            if daemon.pid is None:
                raise DaemonError(f"purifyd exited by itself ({daemon.exit_status()}): {daemon.log_tail()}")
            daemon.kill9()
            kills.append({"round": round_index + 1, "moment": moment, "reports_before": done})
        dropper.join()
        daemon.start()
        wait_for_reports(daemon, [layout.outbox], files, timeout=max(600, files / 5))
        result.daemon_alive = daemon.alive()
        status = daemon.inbox_status()
        exit_status = daemon.drain_and_stop()
        result.checks["drain --exit ends with status 0"] = exit_status == 0
        result.figures = {
            "files": files, "kills": len(kills),
            "kills_during_start_up": sum(kill["moment"] == "start-up" for kill in kills),
            "recovered_at_last_start": status["recovered"],
            "journal_replays_logged": daemon.log_lines("finishing a commit interrupted by a crash"),
            "requeue_lines_logged": daemon.log_lines("requeueing files claimed before a restart"),
            "starts": daemon.starts, "kill_points": kills,
        }
    except DaemonError as error:
        result.error = str(error)
    finally:
        daemon.terminate()
    result.audit = audit_digits(expected, [layout.outbox], layout.failed, layout.spool, layout.inbox)
    result.figures["files_per_s"] = round(files / (time.monotonic() - started), 1)
    return result
