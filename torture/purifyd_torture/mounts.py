"""Real tmpfs mounts for the outbox (mount(8) needs root)."""
from __future__ import annotations

import contextlib
import os
import pathlib
import subprocess
import time
from typing import Iterator


class MountError(RuntimeError):
    """A mount or remount failed (not root, or no mount(8))."""


def run_mount(*arguments: str) -> None:
    completed = subprocess.run(["mount", *arguments], capture_output=True, text=True)
    if completed.returncode != 0:
        raise MountError(f"mount {' '.join(arguments)}: {completed.stderr.strip()}")


@contextlib.contextmanager
def tmpfs(path: pathlib.Path, size: str) -> Iterator[pathlib.Path]:
    """A tmpfs of `size` (mount's syntax: 2m, 64k) on `path`, unmounted (lazily, should a file
    stay open) on exit."""
    if os.geteuid() != 0:
        raise MountError("mounting a tmpfs needs root")
    path.mkdir(parents=True, exist_ok=True)
    run_mount("-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path))
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def remount(path: pathlib.Path, options: str, attempts: int = 100) -> None:
    """Remounts `path` with `options` (ro, rw, size=…). Going read-only fails while a file there
    is open for writing (the daemon writes and closes each file quickly): retried."""
    for attempt in range(attempts):
        try:
            run_mount("-o", f"remount,{options}", str(path))
            return
        except MountError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.05)
