#!/usr/bin/env bash
# Build what the lent GPU machine needs to run the nodes: Python 3.12 there, PyTorch, numpy and
# OpenCV installed, no ROS and no network. Produces .carry/gpu_bundle/bundle.tar.gz (must stay
# under ~50 MiB: a device run carries at most 64 MiB) holding
#   site-packages/  the ROS 2 Kilted runtime wheels for cp312 (rclpy, rmw_fastrtps_cpp, the
#                   message packages and what they need at run time), zstandard, constriction, PyYAML,
#                   rosbags + rosbags-image (image decoding in the nodes)
#   lib/, share/    the wheels' shared libraries and ament index
#   install/        this package colcon-built with Python 3.12 (interfaces compiled for 3.12)
# It is built in .carry/gpu_build/ (a cp312 venv with the build tools; not carried). Both
# folders are ignored by git (/.carry/). Then it checks, with python3.12 and only the bundle (+
# numpy) on the path, that rclpy starts and a SplitFeatures message crosses DDS.
#
#   bash bench/gpu/bundle.sh            # then on the device: bash bench/gpu/run_fleet.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
PY312=${PY312:-/root/.pyenv/versions/3.12.1/bin/python3.12}
WORK=${WORK:-$ROOT/.carry/gpu_build}
DEST=${DEST:-$ROOT/.carry/gpu_bundle}
LIMIT_MIB=${LIMIT_MIB:-50}
VENV=$WORK/venv312
STAGE=$WORK/stage

die() { printf 'bundle: %s\n' "$*" >&2; exit 1; }
step() { printf '==> %s\n' "$*"; }

"$PY312" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null ||
  die "$PY312 is not Python 3.12 (set PY312=/path/to/python3.12)"

# 1. A cp312 venv with the ROS lines of requirements.txt (runtime + build tools) and numpy
#    (rosidl's Python generator compiles against it).
if [ ! -x "$VENV/bin/python" ]; then
  step "creating $VENV"
  "$PY312" -m venv "$VENV"
fi
mkdir -p "$WORK"
grep -E '^(ros-|catkin-pkg|colcon-|numpy|zstandard|constriction|pyyaml|rosbags)' requirements.txt >"$WORK/req.txt"
want=$(sha256sum "$WORK/req.txt" | cut -d' ' -f1)  # the lines taken, not the whole file
if [ "$(cat "$VENV/.requirements.sha256" 2>/dev/null)" != "$want" ]; then
  step "installing the ROS wheels for cp312 into $VENV"
  "$VENV/bin/pip" install --disable-pip-version-check -q -r "$WORK/req.txt" \
    "empy==4.2.1" "lark==1.3.1" 2>&1 | { grep -v "^WARNING: Location '.*' is ignored" || true; }
  [ "${PIPESTATUS[0]}" -eq 0 ] || die "pip install failed (see above)"
  echo "$want" >"$VENV/.requirements.sha256"
fi

# 2. The wheels bake their build machine's include paths into CMake files (as scripts/setup.sh).
py_inc=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
np_inc=$("$VENV/bin/python" -c 'import numpy; print(numpy.get_include())')
baked=$(grep -rl '/opt/python/cp312-cp312' "$VENV/share" --include='*.cmake' 2>/dev/null || true)
if [ -n "$baked" ]; then
  echo "$baked" | xargs sed -i \
    -e "s#/opt/python/cp312-cp312/lib/python3.12/site-packages/numpy/_core/include#$np_inc#g" \
    -e "s#/opt/python/cp312-cp312/include/python3.12#$py_inc#g"
fi

# 3. This package built with 3.12, copied (not symlinked) into the install folder, with
#    vision_msgs (the detections' messages; on no registry) from the ros2 CLI kit's sources.
KIT=${ROS2_CLI_KIT:-$ROOT/../shared/ros2-cli-kit}
[ -d "$KIT/src/vision_msgs" ] || die "no $KIT/src/vision_msgs (set ROS2_CLI_KIT)"
step "colcon build (Python 3.12)"
log=$WORK/colcon.log
rm -rf "$WORK/install"
if ! ( export AMENT_PREFIX_PATH=$VENV CMAKE_PREFIX_PATH=$VENV PATH=$VENV/bin:$PATH
       "$VENV/bin/colcon" --log-base "$WORK/log" build --base-paths "$ROOT" "$KIT/src/vision_msgs" \
         --build-base "$WORK/build" --install-base "$WORK/install" \
         --cmake-args -DPython3_EXECUTABLE="$VENV/bin/python" -DBUILD_TESTING=OFF ) \
       >"$log" 2>&1; then
  tail -n 40 "$log" >&2
  die "colcon build failed (log: $log)"
fi

# 4. Stage the run-time closure of the ROS packages (each distribution's RECORD names its
#    files, including the libraries and ament index entries it put beside site-packages).
step "staging the run-time packages"
rm -rf "$STAGE"
mkdir -p "$STAGE"
"$VENV/bin/python" "$ROOT/bench/gpu/stage.py" "$STAGE" \
  ros-rclpy ros-rmw-fastrtps-cpp ros-std-msgs ros-sensor-msgs ros-geometry-msgs \
  ros-visualization-msgs ros-diagnostic-msgs ros-builtin-interfaces ros-rosidl-default-runtime \
  zstandard constriction pyyaml rosbags rosbags-image  # rosbags-image: image decoding; constriction: eb codecs
cp -a "$WORK/install" "$STAGE/install"
rm -rf "$STAGE/install/mtl_split/share/mtl_split/models"  # the repo's models/ travels anyway
find "$STAGE" -name __pycache__ -prune -exec rm -rf {} +

# 5. Pack and measure.
mkdir -p "$DEST"
tar czf "$DEST/bundle.tar.gz" -C "$STAGE" .
size=$(stat -c %s "$DEST/bundle.tar.gz")
step "$DEST/bundle.tar.gz: $((size / 1024 / 1024)) MiB compressed, $(du -sm "$STAGE" | cut -f1) MiB unpacked"
[ "$size" -le $((LIMIT_MIB * 1024 * 1024)) ] || die "bundle larger than $LIMIT_MIB MiB"

# 6. Check it with python3.12 and nothing but the bundle and numpy on the path.
step "checking the bundle with $PY312 (-S: no site-packages of its own)"
check=$WORK/check
rm -rf "$check"
mkdir -p "$check/root" "$check/numpy"
tar xzf "$DEST/bundle.tar.gz" -C "$check/root"
site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
ln -s "$site/numpy" "$check/numpy/numpy"
[ -d "$site/numpy.libs" ] && ln -s "$site/numpy.libs" "$check/numpy/numpy.libs"
( source "$ROOT/bench/gpu/env.sh" "$check/root"
  export PYTHONPATH=$PYTHONPATH:$check/numpy ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-76}
  "$PY312" -S "$ROOT/bench/gpu/check_bundle.py" ) || die "the bundle does not work under 3.12"
step "ok. Carry .carry/gpu_bundle to the device and run bench/gpu/run_fleet.sh there."
