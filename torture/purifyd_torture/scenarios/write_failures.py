"""Writes that fail for a while: an outbox on a tmpfs that fills up, emptied by a consumer
only once the daemon reports the failure; an outbox remounted read-only and back."""
from __future__ import annotations

import os
import pathlib
import shutil
import time

from ..audit import TEMPORARY_PREFIX, audit_digits
from ..daemon import Daemon, DaemonError, Layout
from ..inputs import stage_digits
from ..mounts import remount, tmpfs
from ..results import Audit, ScenarioResult
from . import Context, count_reports, drop_in_background, metric, wait_for_reports

#: The line each write-failure episode logs: a commit's, or a claim's.
EPISODE_LOG_LINES = ("writes fail; claiming stops", "claiming fails on a write")


def episode_log_lines(daemon: Daemon) -> int:
    return sum(daemon.log_lines(line) for line in EPISODE_LOG_LINES)


def lingering_temporaries(outbox: pathlib.Path, gap: float = 1.5) -> list[str]:
    """Temporary files present in two listings `gap` seconds apart (a retry's probe may hold
    one for an instant; none may stay)."""
    first = {name for name in os.listdir(outbox) if name.startswith(TEMPORARY_PREFIX)}
    time.sleep(gap)
    return sorted(first & {name for name in os.listdir(outbox) if name.startswith(TEMPORARY_PREFIX)})


def collect_finished(outbox: pathlib.Path, collected: pathlib.Path) -> int:
    """A consumer: moves every finished output (its report present) and then its report out
    of the outbox. Returns how many."""
    moved = 0
    for name in os.listdir(outbox):
        if not name.endswith(".json") or name.startswith("."):
            continue
        output = name[: -len(".json")]
        shutil.move(outbox / output, collected / output)
        shutil.move(outbox / name, collected / name)
        moved += 1
    return moved


def full_outbox(context: Context) -> ScenarioResult:
    files, size = context.sizes.full_outbox_files, context.sizes.full_outbox_size
    root = context.work / "full-outbox"
    result = ScenarioResult(name=f"full outbox ({size} tmpfs)", audit=Audit(dropped=files), daemon_alive=False)
    with tmpfs(root / "outbox", size) as outbox:
        layout = Layout.under(root, outbox=outbox)
        collected = root / "collected"
        collected.mkdir()
        expected = stage_digits(context.data, layout.staging, files)
        daemon = context.daemon(layout, queue_capacity=64)
        episodes: list[dict] = []
        try:
            daemon.start()
            drop_in_background(layout.staging, layout.inbox, sorted(expected)).join()
            while count_reports(collected) + count_reports(outbox) < files:
                status = daemon.wait_until(
                    lambda status: status if status["write_failure"] or count_reports(outbox) + count_reports(collected) >= files else None,
                    timeout=600, what="the outbox to fill or every file to be done")
                if not status["write_failure"]:
                    break
                temporaries = lingering_temporaries(outbox)
                claimed_then = status["claimed"]
                time.sleep(2)
                held = daemon.inbox_status()
                episodes.append({
                    "committed_before": count_reports(outbox) + count_reports(collected),
                    "state": held["state"], "stalled": held["stalled"],
                    "claims_while_failing": held["claimed"] - claimed_then,
                    "temporaries_lingering": len(temporaries),
                    "write_failing_metric": metric(daemon, "purifyd_inbox_write_failing"),
                    "error": held["write_failure"],
                })
                collect_finished(outbox, collected)
                daemon.wait_until(lambda status: status["write_failure"] is None, timeout=180,
                                  what="the daemon to resume by itself once space was freed")
            wait_for_reports(daemon, [outbox, collected], files, timeout=300)
            result.daemon_alive = daemon.alive()
            episodes_total = metric(daemon, "purifyd_write_failure_episodes_total")
            exit_status = daemon.drain_and_stop()
            log_lines = episode_log_lines(daemon)
            result.checks = {
                "the outbox filled at least once": len(episodes) >= 1,
                "status said write_failing while full": all(episode["state"] == "write_failing" for episode in episodes),
                "purifyd_inbox_write_failing was 1 while full": all(episode["write_failing_metric"] == 1 for episode in episodes),
                "no file claimed while writes failed": all(episode["claims_while_failing"] == 0 for episode in episodes),
                "no temporary file lingered while full": all(episode["temporaries_lingering"] == 0 for episode in episodes),
                "one log line per episode": log_lines == episodes_total,
                "resumed without a restart": daemon.starts == 1,
                "drain --exit ends with status 0": exit_status == 0,
            }
            result.figures = {"files": files, "tmpfs": size, "episodes": int(episodes_total),
                              "episode_log_lines": log_lines, "committed_before_first_stall":
                              episodes[0]["committed_before"] if episodes else None, "episode_details": episodes}
        except DaemonError as error:
            result.error = str(error)
        finally:
            daemon.terminate()
        result.audit = audit_digits(expected, [outbox, collected], layout.failed, layout.spool, layout.inbox)
    return result


def read_only_remount(context: Context) -> ScenarioResult:
    """The outbox is remounted read-only in the middle of a burst, then read-write again; later
    the inbox's own file system (inbox, spool, failed/) goes read-only and back."""
    files = context.sizes.readonly_files
    root = context.work / "read-only"
    result = ScenarioResult(name="read-only remount", audit=Audit(dropped=files), daemon_alive=False)
    with tmpfs(root / "data", "256m") as data, tmpfs(root / "outbox", "256m") as outbox:
        layout = Layout.under(root, data=data, outbox=outbox)
        half = files // 2
        expected = stage_digits(context.data, layout.staging, files)
        names = sorted(expected)
        daemon = context.daemon(layout, queue_capacity=32)
        try:
            daemon.start()
            quarter = half // 2
            drop_in_background(layout.staging, layout.inbox, names[:quarter]).join()
            wait_for_reports(daemon, [outbox], quarter // 2, timeout=300)
            remount(outbox, "ro")
            # Files dropped now are claimed (the inbox's file system is fine) but cannot be
            # committed, however fast the first ones went.
            drop_in_background(layout.staging, layout.inbox, names[quarter:half]).join()
            failing = daemon.wait_until(lambda status: status if status["write_failure"] else None, timeout=120,
                                        what="a write failure on the read-only outbox")
            time.sleep(3)
            held = daemon.inbox_status()
            remount(outbox, "rw")
            daemon.wait_until(lambda status: status["write_failure"] is None, timeout=180,
                              what="the daemon to resume after the outbox went read-write")
            wait_for_reports(daemon, [outbox], half, timeout=300)

            # The inbox's file system read-only: nothing can be claimed (a claim is a rename).
            remount(data, "ro")
            inbox_names = names[half:]
            time.sleep(0.5)
            remount(data, "rw")
            drop_in_background(layout.staging, layout.inbox, inbox_names[: len(inbox_names) // 2]).join()
            remount(data, "ro")
            time.sleep(3)
            during = daemon.inbox_status()
            remount(data, "rw")
            drop_in_background(layout.staging, layout.inbox, inbox_names[len(inbox_names) // 2:]).join()
            reached = wait_for_reports(daemon, [outbox], files, timeout=300)
            result.daemon_alive = daemon.alive()
            episodes = metric(daemon, "purifyd_write_failure_episodes_total")
            exit_status = daemon.drain_and_stop()
            result.checks = {
                "status said write_failing with EROFS": held["state"] == "write_failing" and "Read-only" in (held["write_failure"] or ""),
                "no file claimed while the outbox was read-only": held["claimed"] == failing["claimed"],
                "every file done after both remounts": reached >= files,
                "one log line per episode": episode_log_lines(daemon) == episodes,
                "resumed without a restart": daemon.starts == 1,
                "drain --exit ends with status 0": exit_status == 0,
            }
            result.figures = {"files": files, "outbox_error": held["write_failure"], "episodes": int(episodes),
                              "inbox_read_only_status": {key: during[key] for key in ("state", "write_failure", "last_error")},
                              "claim_error_log_lines": daemon.log_lines("cannot claim a file")}
        except DaemonError as error:
            result.error = str(error)
        finally:
            daemon.terminate()
        result.audit = audit_digits(expected, [outbox], layout.failed, layout.spool, layout.inbox)
    return result
