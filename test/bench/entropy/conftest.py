"""The entropy analysis scripts import each other by name (as they run from bench/entropy/):
put their folder on the path for these tests."""

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[3] / "bench" / "entropy"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))
