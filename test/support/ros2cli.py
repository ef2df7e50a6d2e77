"""The real ros2 command line in tests: `ros2 launch` as a process group, and `ros2 node / topic /
param` calls with timeouts. The CLI is slow to start on a loaded machine: poll with deadlines."""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import yaml

from support.procs import stop

T = TypeVar("T")
PACKAGE = "mtl_split"
ROOT = Path(__file__).resolve().parents[2]


def missing_cli() -> str | None:
    """Why the real ros2 CLI cannot be used here, or None when it can."""
    if shutil.which("ros2") is None:
        return "no `ros2` command: make setup installs it from ../shared/ros2-cli-kit"
    try:
        importlib.import_module("launch_ros")
    except ImportError as err:
        return (f"launch_ros not importable ({err}): source "
                "build/ros2_cli_kit/install/setup.bash (make test does)")
    return None


def ros2(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    """Run `ros2 ARGS` to its end; stdout and stderr together in ``.stdout``."""
    return subprocess.run(["ros2", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def wait_until(probe: Callable[[], T | None], deadline_s: float, what: str,
               interval: float = 0.5, alive: subprocess.Popen | None = None) -> T:
    """Call ``probe`` until it returns something truthy; fail naming ``what`` at the deadline.

    With ``alive``, fail at once when that process has ended.
    """
    end = time.monotonic() + deadline_s
    while True:
        value = probe()
        if value:
            return value
        if alive is not None and alive.poll() is not None:
            raise AssertionError(f"{what}: the process ended (exit {alive.returncode}) first")
        if time.monotonic() > end:
            raise AssertionError(f"{what}: not within {deadline_s:.0f} s")
        time.sleep(interval)


# No daemon (it would outlive the tests); discovery then needs a few seconds of spinning.
GRAPH = ("--no-daemon", "--spin-time", "3")


def node_names() -> set[str]:
    return set(ros2("node", "list", *GRAPH).stdout.split())


def topic_names() -> set[str]:
    return set(ros2("topic", "list", *GRAPH).stdout.split())


def param_set(node: str, name: str, value: str) -> str:
    """What `ros2 param set` answers ("Set parameter successful" or the reason it failed)."""
    return ros2("param", "set", *GRAPH, "--timeout", "10", node, name, value).stdout


def param_get(node: str, name: str) -> str | None:
    """The value `ros2 param get` prints ("String value is: s8" -> "s8"), None on failure."""
    out = ros2("param", "get", *GRAPH, "--timeout", "10", node, name).stdout
    match = re.search(r"value is: (.*)", out)
    return match.group(1).strip() if match else None


def param_describe(node: str, name: str) -> str:
    """What `ros2 param describe NODE NAME` prints (type, description, constraints)."""
    return ros2("param", "describe", *GRAPH, "--timeout", "10", node, name).stdout


def node_info(node: str) -> dict[str, set[str]]:
    """`ros2 node info NODE` as {section ("Subscribers", "Publishers", "Service Servers", ...):
    names}; {} when the node is unknown."""
    out = ros2("node", "info", *GRAPH, node).stdout
    sections: dict[str, set[str]] = {}
    current: set[str] | None = None
    for line in out.splitlines():
        header = re.fullmatch(r"  (\w[\w ]*):", line)
        if header:
            current = sections.setdefault(header.group(1), set())
        elif current is not None and line.startswith("    "):
            current.add(line.strip().split(":")[0])
    return sections


def topic_endpoints(topic: str) -> list[tuple[str, str]]:
    """(fully qualified node name, PUBLISHER | SUBSCRIPTION) of every endpoint of ``topic``, as
    `ros2 topic info -v` names them."""
    out = ros2("topic", "info", "-v", *GRAPH, topic).stdout
    names = re.findall(r"Node name: (\S+)", out)
    namespaces = re.findall(r"Node namespace: (\S+)", out)
    kinds = re.findall(r"Endpoint type: (\S+)", out)
    return [((ns.rstrip("/") + "/" + name), kind)
            for name, ns, kind in zip(names, namespaces, kinds)]


def echo_once(topic: str, *options: str, timeout: float = 30.0) -> str | None:
    """One message of ``topic`` as `ros2 topic echo --once` prints it, None when none came."""
    try:
        result = ros2("topic", "echo", "--once", topic, *options, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
    return result.stdout if result.returncode == 0 and result.stdout.strip() else None


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Launch:
    """A running `ros2 launch mtl_split FILE ARGS...`; output goes to ``log``."""

    def __init__(self, launch_file: str, arguments: list[str], log: Path):
        self.log = log
        self._log_file = open(log, "w")
        # Own session = own process group, as a terminal gives a foreground job; and SIGINT
        # handled as there: a test run started in the background (`cmd &` in a script) passes
        # SIGINT down ignored, and ros2 launch, which only watches for signals, then never sees
        # one sent to it alone (CI run of 2026-12-07: 60 s without "user interrupted").
        self.proc = subprocess.Popen(["ros2", "launch", PACKAGE, launch_file, *arguments],
                                     stdout=self._log_file, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True,
                                     preexec_fn=_default_sigint)

    def wait_until(self, probe: Callable[[], T | None], deadline_s: float, what: str) -> T:
        """:func:`wait_until` while the launch runs; its output in the failure message."""
        try:
            return wait_until(probe, deadline_s, what, alive=self.proc)
        except AssertionError as err:
            raise AssertionError(f"{err}\n--- ros2 launch output ---\n{self.output()[-3000:]}"
                                 ) from None

    def output(self) -> str:
        if not self._log_file.closed:  # closed: the launch was ended (close), the file stays
            self._log_file.flush()
        return self.log.read_text(errors="replace")

    def interrupt(self, *, group: bool, timeout: float = 60.0) -> int:
        """SIGINT to the launch process (``group=False``) or, like a terminal's Ctrl-C, to it and
        every node (``group=True``); its exit code. SIGKILL after ``timeout`` (then fails)."""
        with contextlib.suppress(ProcessLookupError):
            if group:
                os.killpg(self.proc.pid, signal.SIGINT)
            else:
                self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.close()
            raise AssertionError(f"ros2 launch still running {timeout:.0f} s after SIGINT:\n"
                                 f"{self.output()[-3000:]}") from None

    def process_environment(self, executable: str) -> dict[str, str]:
        """The environment of the launch's process whose command line names ``executable``."""
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError):
                if int(stat.read_text().rsplit(")", 1)[1].split()[2]) != self.proc.pid:
                    continue  # another process group
                argv = (stat.parent / "cmdline").read_bytes().split(b"\0")
                if any(a.decode(errors="replace").endswith(executable) for a in argv):
                    environ = (stat.parent / "environ").read_bytes().split(b"\0")
                    return dict(e.decode(errors="replace").split("=", 1)
                                for e in environ if b"=" in e)
        raise AssertionError(f"no process {executable!r} in the launch's group")

    def group_alive(self) -> bool:
        """Whether any process of the launch's group (launch or a node) still runs."""
        try:
            os.killpg(self.proc.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def close(self) -> None:
        stop(self.proc, timeout=30.0)
        # Nodes that outlived ros2 launch are in its group still.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self._log_file.close()


@contextlib.contextmanager
def ros2_launch(launch_file: str, *arguments: str, log: Path) -> Iterator[Launch]:
    """Run a launch file of the package for the ``with`` block; always ended afterwards."""
    launch = Launch(launch_file, list(arguments), log)
    try:
        yield launch
    finally:
        launch.close()


def shutdown_problems(output: str) -> list[str]:
    """Signs of an unclean shutdown in a launch's output."""
    signs = ("Traceback", "exit code -2", "exit code -15", "exit code -9", "exit code -6",
             "terminate called", "RCLError")
    return [s for s in signs if s in output]


def params_file(path: Path, shipped: str, **changes) -> str:
    """A copy of config/<shipped> with ``changes`` to its parameters, written to ``path``."""
    doc = yaml.safe_load((ROOT / "config" / shipped).read_text())
    doc["/**"]["ros__parameters"].update(changes)
    path.write_text(yaml.safe_dump(doc))
    return str(path)
