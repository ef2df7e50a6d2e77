"""The emulated link: namespaces come and go (also on errors), tbf shapes, nftables drops."""

import os
import shutil
import subprocess
import sys
import textwrap

import pytest
from link import PREFIX, EmulatedLink, LinkShape, namespaces, remove_stale_namespaces, tbf_args

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("tc"),
    reason="network namespaces need root and iproute2")

RECEIVER = textwrap.dedent("""
    import socket, sys, time
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((sys.argv[1], 9999)); s.settimeout(1.0)
    print("ready", flush=True)
    n = nbytes = 0; first = last = None
    while True:
        try:
            data = s.recv(65535)
        except socket.timeout:
            if first is not None: break
            continue
        last = time.monotonic(); first = first or last
        n += 1; nbytes += len(data)
    print(n, nbytes, (last - first) if first else 0.0)
""")

SENDER = textwrap.dedent("""
    import socket, sys, time
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    count, gap = int(sys.argv[2]), float(sys.argv[3])
    for i in range(count):
        try:
            s.sendto(b"x" * 1200, (sys.argv[1], 9999))
        except OSError:
            pass  # qdisc full (ENOBUFS): the packet is lost, as on a real link
        if gap: time.sleep(gap)
""")


def _send(link: EmulatedLink, count: int, gap: float) -> tuple[int, int, float]:
    """Send ``count`` 1200-byte datagrams robot -> server; (received, bytes, seconds)."""
    rx = subprocess.Popen(link.command("server", [sys.executable, "-c", RECEIVER,
                                                  link.address["server"]]),
                          stdout=subprocess.PIPE, text=True)
    try:
        assert rx.stdout.readline().strip() == "ready"
        subprocess.run(link.command("robot", [sys.executable, "-c", SENDER,
                                              link.address["server"], str(count), str(gap)]),
                       check=True, timeout=60)
        out, _ = rx.communicate(timeout=30)
    finally:
        rx.kill()
    n, nbytes, seconds = out.split()
    return int(n), int(nbytes), float(seconds)


def test_shape_rejects_impossible_values():
    with pytest.raises(ValueError, match="bandwidth"):
        LinkShape(bandwidth_mbit=0)
    with pytest.raises(ValueError, match="loss"):
        LinkShape(loss_pct=100)
    with pytest.raises(ValueError, match="queue"):
        LinkShape(bandwidth_mbit=5, queue_ms=0)
    assert LinkShape(20, 1).describe() == "20 Mbit/s, 1% loss"
    assert LinkShape().describe() == "unshaped"


def test_tbf_bucket_covers_timer_granularity():
    # 5 Mbit/s: 10 ms is 6.25 KB, below the 16 KB floor; 100 Mbit/s: 10 ms = 125 KB.
    assert tbf_args(LinkShape(5)) == ["tbf", "rate", "5000kbit", "burst", "16384",
                                      "latency", "100ms"]
    assert tbf_args(LinkShape(100, queue_ms=50))[4] == "125000"


@needs_root
def test_namespaces_exist_inside_and_are_removed_after():
    with EmulatedLink() as link:
        assert link.exists()
        names = set(link.ns.values())
        assert names <= namespaces()
    assert not names & namespaces()


@needs_root
def test_namespaces_are_removed_when_the_body_fails():
    with pytest.raises(RuntimeError, match="boom"):
        with EmulatedLink() as link:
            names = set(link.ns.values())
            raise RuntimeError("boom")
    assert not names & namespaces()


@needs_root
def test_leftovers_of_a_killed_run_are_removed():
    dead = subprocess.Popen(["true"])
    dead.wait()
    name = f"{PREFIX}-{dead.pid}-robot"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        assert name in remove_stale_namespaces()
        assert name not in namespaces()
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


@needs_root
def test_tbf_caps_the_rate_at_the_shaped_bandwidth():
    with EmulatedLink() as link:
        link.set_shape(LinkShape(bandwidth_mbit=4.0))
        # ~2 s of traffic offered at about twice the shaped rate, so the bucket's initial
        # burst (16 KB) is small next to what the shaper lets through.
        n, nbytes, seconds = _send(link, count=1700, gap=0.0012)
        stats = link.qdisc_stats("robot")
    rate = nbytes * 8 / seconds / 1e6
    assert n > 50
    # Delivered rate is the shaped rate (payload only, so a little under 4 Mbit/s).
    assert 3.0 < rate < 4.3, rate
    assert stats["bytes"] > 0


@needs_root
@pytest.mark.skipif(not shutil.which("nft"), reason="packet loss needs nftables")
def test_random_loss_drops_about_that_share_of_packets():
    with EmulatedLink() as link:
        link.set_shape(LinkShape(loss_pct=20.0))
        n, _, _ = _send(link, count=2000, gap=0.0005)
        link.set_shape(LinkShape())  # loss removed again
        n_clean, _, _ = _send(link, count=500, gap=0.0005)
    assert 0.74 < n / 2000 < 0.86, n
    assert n_clean == 500


COUNTER = textwrap.dedent("""
    import select, socket, sys, time
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((sys.argv[1], 9998))
    expected, grace = int(sys.argv[2]), float(sys.argv[3])
    print("ready", flush=True)
    n, end, watched = 0, None, [s, sys.stdin]
    while n < expected and (end is None or time.monotonic() < end):
        ready, _, _ = select.select(watched, [], [], 0.05)
        if s in ready:
            s.recv(65535); n += 1
        if sys.stdin in ready and not sys.stdin.readline():  # EOF: the sender is done
            watched, end = [s], time.monotonic() + grace
    print(n)
""")


def _received(link: EmulatedLink, sender: str, receiver: str, count: int) -> int:
    """Datagrams of ``count`` sent ``sender`` -> ``receiver`` that arrived: the counter stops
    at ``count`` or 1 s after the sender finished (what a down link would have let through
    by then), not after a fixed wait."""
    rx = subprocess.Popen(link.command(receiver, [sys.executable, "-c", COUNTER,
                                                  link.address[receiver], str(count), "1.0"]),
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert rx.stdout.readline().strip() == "ready"
        send = SENDER.replace("9999", "9998")
        subprocess.run(link.command(sender, [sys.executable, "-c", send,
                                             link.address[receiver], str(count), "0.001"]),
                       check=True, timeout=60)
        out, _ = rx.communicate(timeout=30)  # closes the counter's stdin: the sender is done
    finally:
        rx.kill()
    return int(out.strip())


@needs_root
@pytest.mark.skipif(not shutil.which("nft"), reason="a link that is down needs nftables")
def test_a_link_that_is_down_drops_everything_both_ways_and_comes_back():
    assert LinkShape(down=True).describe() == "down"
    with EmulatedLink() as link:
        link.set_shape(LinkShape(down=True))
        down = [_received(link, "robot", "server", 200), _received(link, "server", "robot", 200)]
        link.set_shape(LinkShape(bandwidth_mbit=20))  # back up, shaped
        up = [_received(link, "robot", "server", 200), _received(link, "server", "robot", 200)]
    assert down == [0, 0]
    assert up == [200, 200]
