# Sourced by the run_*.sh scripts on the lent GPU machine (Python 3.12 with torch/numpy/OpenCV,
# no ROS, no network), from the repository root: unpacks the bundle that bench/gpu/bundle.sh
# built (carried as .carry/gpu_bundle) once per bundle, sets up its environment with this
# checkout's packages first, and checks that torch sees CUDA and rclpy and the messages load.
# Sets PY (python3.12). $1: the calling script's name, for its messages. BUNDLE=none: no
# bundle, the current environment's Python and ROS (a check of a script on this machine).
NAME=${1:-prelude}
ROOT=$(pwd)
BUNDLE=${BUNDLE:-$ROOT/.carry/gpu_bundle/bundle.tar.gz}
UNPACKED=${UNPACKED:-/tmp/mtl_split_gpu_bundle}

if [ "$BUNDLE" = none ]; then
  PY=${PY:-python3}
else
  PY=${PY:-$(command -v python3.12 || command -v python3)}
  "$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' ||
    { echo "$NAME: $PY is not Python 3.12 (the bundle is built for cp312)" >&2; exit 2; }
  [ -f "$BUNDLE" ] || { echo "$NAME: no $BUNDLE (run bench/gpu/bundle.sh, carry .carry/gpu_bundle)" >&2; exit 2; }
  # Unpack once per bundle (a warm machine keeps /tmp between runs).
  if [ ! -f "$UNPACKED/.from" ] || [ "$(cat "$UNPACKED/.from")" != "$(sha256sum <"$BUNDLE")" ]; then
    rm -rf "$UNPACKED"
    mkdir -p "$UNPACKED"
    tar xzf "$BUNDLE" -C "$UNPACKED"
    sha256sum <"$BUNDLE" >"$UNPACKED/.from"
  fi
  source "$ROOT/bench/gpu/env.sh" "$UNPACKED"
fi
# This checkout's Python packages before the bundle's copies: the bundle needs rebuilding only
# when the messages (mtl_split_msgs, vision_msgs) change, not for every code change.
export PYTHONPATH=$ROOT:$PYTHONPATH
export MTL_SPLIT_MODELS=$ROOT/models          # the packaged model travels with the repo
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-76} ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export PYTHONUNBUFFERED=1

# NEED_CUDA=0: a check of the script itself on a machine without a GPU.
NEED_CUDA=${NEED_CUDA:-1} "$PY" - <<'PY'
import importlib, os, pathlib, sys, torch, rclpy
from vision_msgs.msg import Detection2DArray  # noqa: F401  (the detections; bundle.sh builds it)
from mtl_split_core.runtime.server import ServerRunner  # noqa: F401
import mtl_split_ros.outputs  # noqa: F401  (what the nodes import: rosbags-image, cv2)
print(f"python {sys.version.split()[0]}, torch {torch.__version__}, "
      f"cuda {torch.cuda.is_available()} ({torch.cuda.device_count()} GPUs), rclpy ok", flush=True)
msgs = importlib.import_module("mtl_split.msg")
for path in sorted(pathlib.Path("mtl_split_msgs/msg").glob("*.msg")):
    fields = {line.split()[1] for line in path.read_text().splitlines()
              if line.strip() and not line.lstrip().startswith("#") and "=" not in line}
    if set(getattr(msgs, path.stem).get_fields_and_field_types()) != fields:
        sys.exit(f"the bundle's {path.stem} is not this checkout's: run bench/gpu/bundle.sh")
sys.exit(0 if torch.cuda.is_available() or os.environ["NEED_CUDA"] == "0" else 3)
PY
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
