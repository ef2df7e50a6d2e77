"""An emulated robot-to-server radio link: two network namespaces joined by a veth pair.

Bandwidth is shaped with a ``tbf`` qdisc on both ends (iproute2) and random packet loss is
added with an nftables ``numgen random`` drop rule (Debian's ``nftables``); a link that is
``down`` (the server out of reach) drops every packet arriving at either end (nftables).
One-way delay is not emulated: it needs the ``netem`` qdisc, which this project's machines'
kernel lacks ("Specified qdisc kind is unknown"); for a best-effort stream it adds to latency
and does not change throughput. Needs root. Everything is removed on exit, also on an exception,
and namespaces that a killed earlier run left behind are removed on the next start.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass

PREFIX = "mtlsplit"
SIDES = ("robot", "server")
ADDRESSES = {"robot": "10.213.0.1", "server": "10.213.0.2"}


class LinkError(RuntimeError):
    """The link cannot be set up here (not root, iproute2/nftables missing, kernel refuses)."""


@dataclass(frozen=True)
class LinkShape:
    """What the link does to traffic in each direction."""

    bandwidth_mbit: float | None = None   # None = unshaped (veth line rate)
    loss_pct: float = 0.0                 # random drop probability per packet, percent
    queue_ms: float = 100.0               # tbf queue: packets waiting longer are dropped
    down: bool = False                    # every packet dropped, both directions (tbf cannot 0)

    def __post_init__(self):
        if self.bandwidth_mbit is not None and not self.bandwidth_mbit > 0:
            raise ValueError(f"bandwidth must be > 0 Mbit/s, got {self.bandwidth_mbit}")
        if not 0.0 <= self.loss_pct < 100.0:
            raise ValueError(f"loss must be in [0, 100) percent, got {self.loss_pct}")
        if not self.queue_ms > 0:
            raise ValueError(f"queue must be > 0 ms, got {self.queue_ms}")

    def describe(self) -> str:
        if self.down:
            return "down"
        rate = f"{self.bandwidth_mbit:g} Mbit/s" if self.bandwidth_mbit else "unshaped"
        return rate + (f", {self.loss_pct:g}% loss" if self.loss_pct else "")


def _run(*argv: str) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        raise LinkError(f"`{' '.join(argv)}` failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def tbf_args(shape: LinkShape) -> list[str]:
    """tc arguments of the token bucket for ``shape`` (bucket >= 10 ms of traffic and >= 16 KB,
    so the kernel's timer granularity does not cap the rate)."""
    rate_bps = shape.bandwidth_mbit * 1e6
    burst = max(16 * 1024, int(rate_bps / 8 * 0.010))
    return ["tbf", "rate", f"{int(rate_bps / 1e3)}kbit", "burst", str(burst),
            "latency", f"{shape.queue_ms:g}ms"]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def namespaces() -> set[str]:
    """Names of this machine's network namespaces (`ip netns list`)."""
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in listing.splitlines() if line.strip()}


def remove_stale_namespaces() -> list[str]:
    """Delete our namespaces whose creating process is gone; returns their names."""
    removed = []
    for name in sorted(namespaces()):
        m = re.fullmatch(rf"{PREFIX}-(\d+)-({'|'.join(SIDES)})", name)
        if m and not _pid_alive(int(m.group(1))):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
            removed.append(name)
    return removed


class EmulatedLink:
    """``with EmulatedLink() as link:`` -> namespaces ``link.ns['robot']``/``['server']``."""

    def __init__(self):
        self.ns = {side: f"{PREFIX}-{os.getpid()}-{side}" for side in SIDES}
        self.dev = {"robot": "veth-robot", "server": "veth-server"}
        self.address = dict(ADDRESSES)
        self.shape = LinkShape()
        self._created: list[str] = []

    # -- lifecycle ------------------------------------------------------------------------
    def __enter__(self) -> EmulatedLink:
        check_requirements()
        remove_stale_namespaces()
        try:
            self._create()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _create(self) -> None:
        for side in SIDES:
            _run("ip", "netns", "add", self.ns[side])
            self._created.append(self.ns[side])
        _run("ip", "link", "add", self.dev["robot"], "netns", self.ns["robot"], "type", "veth",
             "peer", "name", self.dev["server"], "netns", self.ns["server"])
        for side in SIDES:
            ns, dev = self.ns[side], self.dev[side]
            _run("ip", "-n", ns, "addr", "add", f"{self.address[side]}/24", "dev", dev)
            _run("ip", "-n", ns, "link", "set", "lo", "up")
            _run("ip", "-n", ns, "link", "set", dev, "up")
            # DDS discovery multicasts (239.255.0.1): without a route the send fails.
            _run("ip", "-n", ns, "route", "add", "224.0.0.0/4", "dev", dev)

    def close(self) -> None:
        """Delete the namespaces (the veth pair goes with them). Safe to call twice."""
        while self._created:
            subprocess.run(["ip", "netns", "del", self._created.pop()], capture_output=True)

    def exists(self) -> bool:
        return set(self.ns.values()) <= namespaces()

    # -- shaping --------------------------------------------------------------------------
    def set_shape(self, shape: LinkShape) -> None:
        """Apply ``shape`` to both directions (replaces the previous one)."""
        for side in SIDES:
            ns, dev = self.ns[side], self.dev[side]
            subprocess.run(["ip", "netns", "exec", ns, "tc", "qdisc", "del", "dev", dev, "root"],
                           capture_output=True)
            if shape.bandwidth_mbit:
                _run("ip", "netns", "exec", ns, "tc", "qdisc", "replace", "dev", dev, "root",
                     *tbf_args(shape))
            subprocess.run(["ip", "netns", "exec", ns, "nft", "delete", "table", "inet",
                            PREFIX], capture_output=True)
            if shape.loss_pct or shape.down:
                if not shutil.which("nft"):
                    raise LinkError("packet loss needs nftables: apt-get install nftables")
                nft = ["ip", "netns", "exec", ns, "nft"]
                _run(*nft, "add", "table", "inet", PREFIX)
            if shape.loss_pct:
                per_10k = int(round(shape.loss_pct * 100))
                _run(*nft, "add", "chain", "inet", PREFIX, "out",
                     "{ type filter hook output priority 0; }")
                _run(*nft, "add", "rule", "inet", PREFIX, "out", "oifname", dev,
                     "numgen", "random", "mod", "10000", "<", str(per_10k), "drop")
            if shape.down:
                # Dropped on arrival, as a radio out of range: the sender's socket sees no
                # error (an output-hook drop would fail its sendto with EPERM).
                _run(*nft, "add", "chain", "inet", PREFIX, "in",
                     "{ type filter hook input priority 0; }")
                _run(*nft, "add", "rule", "inet", PREFIX, "in", "iifname", dev, "drop")
        self.shape = shape

    # -- use ------------------------------------------------------------------------------
    def command(self, side: str, argv: list[str], cpus: str | None = None) -> list[str]:
        """``argv`` run inside ``side``'s namespace (pinned to ``cpus``, e.g. "0", if given)."""
        pin = ["taskset", "-c", cpus] if cpus is not None else []
        return ["ip", "netns", "exec", self.ns[side], *pin, *argv]

    def counters(self, side: str) -> dict:
        """tx/rx bytes and packets of ``side``'s end of the link (kernel counters)."""
        out = _run("ip", "-n", self.ns[side], "-s", "-j", "link", "show", "dev", self.dev[side])
        stats = json.loads(out)[0]["stats64"]
        return {"tx_bytes": stats["tx"]["bytes"], "tx_packets": stats["tx"]["packets"],
                "tx_dropped": stats["tx"]["dropped"], "rx_bytes": stats["rx"]["bytes"],
                "rx_packets": stats["rx"]["packets"]}

    def qdisc_stats(self, side: str) -> dict:
        """Bytes sent / packets dropped by the shaping qdisc on ``side`` (zeros if unshaped)."""
        out = _run("ip", "netns", "exec", self.ns[side], "tc", "-s", "-j", "qdisc", "show",
                   "dev", self.dev[side])
        for q in json.loads(out):
            if q.get("kind") == "tbf":
                return {"bytes": q.get("bytes", 0), "drops": q.get("drops", 0),
                        "overlimits": q.get("overlimits", 0)}
        return {"bytes": 0, "drops": 0, "overlimits": 0}


def check_requirements() -> None:
    """Raise LinkError saying what is missing to build a link on this machine."""
    if os.geteuid() != 0:
        raise LinkError("network namespaces need root (run as root or with sudo)")
    for tool, package in (("ip", "iproute2"), ("tc", "iproute2"), ("taskset", "util-linux")):
        if not shutil.which(tool):
            raise LinkError(f"`{tool}` not found: apt-get install {package}")
