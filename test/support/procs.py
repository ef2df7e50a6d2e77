"""Start and stop OS processes for ROS tests: every process is ended, also on failure."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence


@contextlib.contextmanager
def python_process(code_or_args: str | Sequence[str], *, env: dict | None = None,
                   timeout: float = 10.0) -> Iterator[subprocess.Popen]:
    """Run ``python -c code`` (str) or ``python args...`` in its own process group.

    On exit the whole group gets SIGINT, then SIGKILL after ``timeout`` seconds.
    """
    args = ["-c", code_or_args] if isinstance(code_or_args, str) else list(code_or_args)
    proc = subprocess.Popen([sys.executable, *args], env={**os.environ, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        yield proc
    finally:
        stop(proc, timeout)


def stop(proc: subprocess.Popen, timeout: float = 10.0) -> str:
    """End ``proc`` and its group; return what it printed."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    out = proc.stdout.read() if proc.stdout and not proc.stdout.closed else ""
    if proc.stdout:
        proc.stdout.close()
    return out or ""
