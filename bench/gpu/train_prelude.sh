# Sourced by the train_*.sh scripts on the lent GPU machine (its own Python with torch; no ROS
# bundle), from the repository root: the carried data and wheels, the device, a log folder that
# comes back as $OUT/logs.tar whatever happens, the wheels installed, and `$cli`.
# Reads CARRY (default .carry/train27), DEVICE (cuda), WORKERS (7), WHEELS ($CARRY/whl; empty:
# none, e.g. a dry run on a CPU where they are installed), OUT.
carry=${CARRY:-.carry/train27}
device=${DEVICE:-cuda}
workers=${WORKERS:-7}
wheels=${WHEELS-$carry/whl}
logs=$(mktemp -d)
trap 'tar -C "$logs" -cf "$OUT/logs.tar" .' EXIT
if [ -n "$wheels" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site "$wheels"/*.whl || exit 1
fi
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | tee "$logs/gpu.txt"
cli="python3 -m mtl_split_core.cli"
