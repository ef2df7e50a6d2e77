"""The benchmark's helper modules import each other by name (as bench/rate_accuracy.py runs
them): put their folder on the path for these tests."""

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[3] / "bench" / "rate_accuracy"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))
