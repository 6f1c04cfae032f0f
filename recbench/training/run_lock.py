"""One process trains a run at a time: a lock file in the run folder, whatever Snakemake's own
lock says (a second `snakemake` after `--unlock`, a job started by hand, a cluster job resubmitted
while the first still runs).

    with run_lock(run_dir):        # scripts/train.py, around the whole run
        ...

The lock is `{run_dir}/train.lock`, held with fcntl.flock for the life of the process and holding
`pid host started` for the message. The kernel drops a flock when its process dies, however it
dies, so a lock file left by a killed process (a stale lock: its pid is dead) is simply taken
over, and the taking over is logged. A held lock refuses the second process with RunLocked
(a RuntimeError, so rule scripts print it as one line) naming the run folder, the pid and the
host. Released (and the file removed) on exit.
"""
from __future__ import annotations

import fcntl
import logging
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

LOCK_NAME = "train.lock"


class RunLocked(RuntimeError):
    """Another live process holds the run's lock."""


def _holder(text: str) -> str:
    """`pid N on host H since T` from a lock file's content, or what it holds."""
    parts = text.split()
    if len(parts) >= 3:
        return f"process {parts[0]} on host {parts[1]} (since {' '.join(parts[2:])})"
    return f"an unknown process (lock file content {text!r})"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _live_holder(text: str) -> bool:
    """Whether a lock file's content names another live process on this host."""
    parts = text.split()
    return (len(parts) >= 2 and parts[0].isdigit() and int(parts[0]) != os.getpid()
            and parts[1] == socket.gethostname() and _pid_alive(int(parts[0])))


@contextmanager
def run_lock(run_dir: str | Path):
    """Hold `{run_dir}/train.lock` for the body; RunLocked if a live process holds it."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_NAME
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        held = os.pread(fd, 4096, 0).decode(errors="replace").strip()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            busy = False
        except BlockingIOError:
            busy = True
        except OSError:              # no flock on this file system (ENOLCK): the pid decides
            busy = _live_holder(held)
        if busy:
            os.close(fd)
            raise RunLocked(f"{run_dir} is being trained by {_holder(held)} (lock {path}); "
                            "not starting a second training of the same run. Wait for it to "
                            "finish; a lock whose process has died is taken over by the next "
                            "start") from None
        # the holder may have removed the file between our open and our lock: lock the file
        # that is at the path now, else two processes would each hold a different inode
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    if held:
        log.warning("%s: took over the stale lock of %s, whose process has ended", run_dir,
                    _holder(held))
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()} {socket.gethostname()} {stamp}\n".encode(), 0)
    try:
        yield path
    finally:
        try:
            path.unlink()            # before the unlock, so no one locks a file about to go
        except FileNotFoundError:
            pass
        os.close(fd)
