"""`mtl-split fleet status` against a real publisher of pool announcements and edge
/diagnostics in another process (real DDS): the table, --once, SIGINT, bad arguments; and the
table itself from messages, without DDS."""

import os
import signal
import subprocess
import sys

import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from mtl_split_core.runtime.pool_announcement import Announcement, default_input_topic
from mtl_split_tools.fleet_status import FleetTable, robot_of_node
from support.procs import python_process, stop

# Two servers announcing and two edges' diagnostics, every 0.2 s, until interrupted.
PUBLISHER = """
import time, rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from mtl_split.msg import ServerAnnouncement
from mtl_split_core.runtime.pool_announcement import Announcement, POOL_TOPIC, default_input_topic
from mtl_split_ros.pool_msg import POOL_QOS, announcement_to_msg
rclpy.init()
node = rclpy.create_node('fake_pool')
pool = node.create_publisher(ServerAnnouncement, POOL_TOPIC, POOL_QOS)
diag = node.create_publisher(DiagnosticArray, '/diagnostics', 10)
def edge(ns, values, level):
    return DiagnosticStatus(name='mtl_split_edge: edge', hardware_id=f'/{ns}/mtl_split_edge',
                            level=level, message='ok',
                            values=[KeyValue(key=k, value=v) for k, v in values.items()])
seq = 0
try:
    while True:
        seq += 1
        for sid, load, robots in (('gpu0_0', 90.0, ('r1', 'r3', 'r4')), ('gpu0_1', 0.0, ())):
            pool.publish(announcement_to_msg(Announcement(
                server_id=sid, sequence=seq, input_topic=default_input_topic(sid),
                fingerprints=('fp',), capacity_fps=300.0, load_fps=load, queue_ms=1.5,
                latency_ms_p99=27.25, robots=robots), node.get_clock().now().to_msg()))
        diag.publish(DiagnosticArray(status=[
            edge('r1', {'link_mode': 'remote', 'pool_server': 'gpu0_0', 'fps_served': '29.5',
                        'feedback_silent_s': '0.031'}, b'\\x00'),
            edge('r2', {'link_mode': 'local', 'local_fps': '9.8',
                        'last_event': 'pool local: gpu0_1 -> local (refused: full)'},
                 b'\\x01')]))
        print('published', flush=True)
        time.sleep(0.2)
except KeyboardInterrupt:
    pass
"""


def _fleet(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "mtl_split_tools.cli", "fleet", *args],
                          capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.ros
def test_once_prints_the_servers_and_robots_it_hears():
    with python_process(PUBLISHER) as pub:
        assert "published" in pub.stdout.readline()
        r = _fleet("status", "--once", "--wait", "4")
        assert r.returncode == 0, r.stderr
    lines = {line.split()[0]: line.split() for line in r.stdout.splitlines() if line.strip()}
    # SERVER LOAD CAPACITY USE QUEUE P99 ROBOTS STATE
    assert lines["gpu0_0"][1:8] == ["90", "300", "30%", "1.5", "27.2", "3", "accepting"], \
        r.stdout
    assert lines["gpu0_1"][1:4] == ["0", "300", "0%"]
    # ROBOT SERVER MODE FPS BLIND
    assert lines["r1"][1:6] == ["gpu0_0", "remote", "29.5", "0.03", "ok"]
    assert lines["r2"][1:5] == ["-", "local", "9.8", "0.00"]
    assert "pool local" in r.stdout and "Traceback" not in r.stderr


@pytest.mark.ros
def test_live_mode_refreshes_and_exits_0_on_sigint():
    with python_process(PUBLISHER) as pub:
        assert "published" in pub.stdout.readline()
        proc = subprocess.Popen([sys.executable, "-m", "mtl_split_tools.cli", "fleet",
                                 "status", "--wait", "1", "--period", "0.5"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
        try:
            tables = 0
            for line in proc.stdout:
                tables += line.startswith("mtl-split fleet status")
                if tables >= 3 and "gpu0_1" in line:
                    break
            os.kill(proc.pid, signal.SIGINT)
            rc = proc.wait(30)
        finally:
            out = stop(proc)
        assert tables >= 3 and rc == 0, out
        assert "Traceback" not in out


@pytest.mark.parametrize("args", [("bogus",), ("status", "--wait", "0"),
                                  ("status", "--topic", "pool")])
def test_bad_arguments_are_one_line_and_exit_2(args):
    r = _fleet(*args)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr


def _status(ns, values, level=0):
    return DiagnosticStatus(name="mtl_split_edge: edge", hardware_id=f"{ns}/mtl_split_edge",
                            level=bytes([level]),
                            values=[KeyValue(key=k, value=v) for k, v in values.items()])


def test_the_table_marks_silent_servers_and_robots_and_finds_a_robots_server():
    table = FleetTable(silent_s=1.0)
    table.announcement(Announcement(
        server_id="s0", sequence=1, input_topic=default_input_topic("s0"),
        fingerprints=("fp",), load_fps=30.0, robots=("r1",), accepting=False,
        refusal="full", refused=(("r9", "full"),)), "ok", now=0.0)
    table.announcement(None, "auth_forged", now=0.0)
    table.diagnostics(DiagnosticArray(status=[
        _status("/r1", {"link_mode": "remote", "fps": "12.0", "feedback_silent_s": "inf"}),
        DiagnosticStatus(name="mtl_split_server: server", hardware_id="/mtl_split_server")]),
        now=0.0)
    text = table.render(now=5.0)
    rows = {line.split()[0]: line for line in text.splitlines() if line.strip()}
    assert "silent 5.0 s" in rows["s0"] and "?" in rows["s0"].split()  # capacity unknown
    assert rows["r1"].split()[1:5] == ["s0", "remote", "12.0", "inf"]
    assert "silent 5.0 s" in rows["r1"] and "mtl_split_server" not in text
    assert "announcements ignored: auth_forged 1" in text
    assert robot_of_node("/fleet/r7/mtl_split_edge") == "fleet/r7"
    assert robot_of_node("/mtl_split_edge") == "/"
