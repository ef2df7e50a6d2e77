"""The output gate: nothing passes after close, and close waits for a call in progress."""

import threading
import time

from mtl_split_core.runtime.output_gate import OutputGate


def test_output_gate_blocks_publishing_after_close():
    gate, published = OutputGate(), []
    assert gate.run(published.append, 1)
    started, release = threading.Event(), threading.Event()

    def slow_publish(x):
        started.set()
        release.wait(5)
        published.append(x)

    worker = threading.Thread(target=gate.run, args=(slow_publish, 2))
    worker.start()
    started.wait(5)
    closer = threading.Thread(target=gate.close)
    closer.start()
    time.sleep(0.1)
    assert closer.is_alive(), "close() must wait for the publish in progress"
    release.set()
    closer.join(5)
    worker.join(5)
    assert not gate.run(published.append, 3)
    assert published == [1, 2]


def test_a_revoked_thread_passes_nothing():
    gate, published = OutputGate(), []
    worker = threading.Thread(target=gate.run, args=(published.append, 1))
    gate.revoke(worker)
    worker.start()
    worker.join(5)
    assert published == [] and gate.run(published.append, 2) and published == [2]
