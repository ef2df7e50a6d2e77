#!/usr/bin/env bash
# Set up a machine with NO ROS installed: a Python 3.11 virtual environment with the ROS 2
# Kilted wheels from PyPI, torch (CPU), the project's dependencies, and a colcon build of the
# package into install/. Idempotent: a second run only re-checks (seconds; colcon again only when
# the package's files, messages or CMake files changed).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV=${VENV:-$ROOT/.venv}
PYTHON=${PYTHON:-python3.11}

die() { printf '\nmake setup: %s\n' "$*" >&2; exit 1; }
step() { printf '==> %s\n' "$*"; }

# 1. Tools that must come from the OS. Each missing one is named with the command that fixes it.
command -v "$PYTHON" >/dev/null 2>&1 ||
  die "$PYTHON not found. The ROS 2 Kilted wheels on PyPI are built for CPython 3.11; install it (e.g. apt-get install python3.11 python3.11-venv) or run: make setup PYTHON=/path/to/python3.11"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' ||
  die "$PYTHON is $("$PYTHON" -V 2>&1), but the ROS 2 wheels need Python 3.11. Run: make setup PYTHON=/path/to/python3.11"
"$PYTHON" -c 'import venv, ensurepip' 2>/dev/null ||
  die "$PYTHON cannot create virtual environments; install the venv module (apt-get install python3.11-venv)."
for tool in cmake cc c++ make; do
  command -v "$tool" >/dev/null 2>&1 ||
    die "'$tool' not found: building the ROS interfaces needs CMake and a C/C++ compiler (apt-get install cmake g++ make)."
done

# 2. The virtual environment and the pinned dependencies (requirements.txt is the one place).
if [ ! -x "$VENV/bin/python" ]; then
  step "creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.requirements.sha256"
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  step "installing requirements.txt into $VENV (a few minutes on a fresh machine)"
  # pip.conf on these machines lists local indexes that may be absent: drop those warnings only.
  "$VENV/bin/pip" install --disable-pip-version-check -q -r requirements.txt 2>&1 |
    grep -v "^WARNING: Location '.*' is ignored" || true
  [ "${PIPESTATUS[0]}" -eq 0 ] || die "pip install -r requirements.txt failed (see above)."
  echo "$want" >"$stamp"
else
  step "requirements.txt already installed"
fi

# 3. The ROS wheels bake the include paths of the machine that built them into std_msgs' (and
#    others') CMake targets; CMake stops with "non-existent path" unless they point here.
py_inc=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
np_inc=$("$VENV/bin/python" -c 'import numpy; print(numpy.get_include())')
baked=$(grep -rl '/opt/python/cp311-cp311' "$VENV/share" --include='*.cmake' 2>/dev/null || true)
if [ -n "$baked" ]; then
  step "pointing the wheels' baked include paths at this machine ($(echo "$baked" | wc -l) files)"
  echo "$baked" | xargs sed -i \
    -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$np_inc#g" \
    -e "s#/opt/python/cp311-cp311/include/python3.11#$py_inc#g"
fi

# 4. An rmw is what lets rclpy talk; pip does not install one as a dependency of rclpy.
"$VENV/bin/python" - <<'PY' || die "rclpy cannot start: install an rmw into the venv (pip install ros-rmw-fastrtps-cpp) and re-run make setup."
import rclpy
rclpy.init()
rclpy.shutdown()
PY

# 5. Build the package (interfaces + Python packages + executables) with colcon, again only when
#    what it reads changed: the install tree links each source file (--symlink-install), so an
#    edit needs no build, a new or removed file, the messages or the CMake files do. Outside a
#    git checkout it always builds. (Skipping saves `make test-fast` 3-6 s on 2 cores.)
export AMENT_PREFIX_PATH="$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export CMAKE_PREFIX_PATH="$VENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
export PATH="$VENV/bin:$PATH"
build_stamp=build/.mtl_split_build_inputs.sha256
build_inputs=$( { git ls-files -co --exclude-standard 2>/dev/null || date +%s%N; } |
  cat - CMakeLists.txt package.xml mtl_split_msgs/msg/*.msg "$stamp" <(echo "$VENV") |
  sha256sum | cut -d' ' -f1)
if [ -f install/setup.bash ] && [ "$(cat "$build_stamp" 2>/dev/null)" = "$build_inputs" ]; then
  step "colcon build: up to date"
else
  step "colcon build"
  log=$(mktemp)
  rm -f "$build_stamp"
  if ! "$VENV/bin/colcon" --log-base build/log build --base-paths "$ROOT" --build-base build \
      --install-base install --symlink-install \
      --cmake-args -DPython3_EXECUTABLE="$VENV/bin/python" -DBUILD_TESTING=OFF >"$log" 2>&1; then
    tail -n 60 "$log" >&2
    die "colcon build failed (full log: $log). A 'non-existent path' error means step 3 missed a baked path."
  fi
  rm -f "$log"
  echo "$build_inputs" >"$build_stamp"
fi

# 6. The real ros2 CLI (ros2 launch / topic / param / node), which PyPI does not carry: built from
#    the upstream sources in the kit beside the repository when it is there (CI, the lab).
KIT=${ROS2_CLI_KIT:-$ROOT/../shared/ros2-cli-kit}
if [ -f "$KIT/install.sh" ]; then
  step "ros2 CLI from $KIT"
  # install.sh returns at once when `import launch_ros` works, which needs the
  # composition_interfaces it generated on the path: source its setup first when there.
  # pipefail: the pipeline fails when install.sh does, whatever the filter let through.
  ( cli_setup=$ROOT/build/ros2_cli_kit/install/setup.bash
    if [ -f "$cli_setup" ]; then set +u; source "$cli_setup"; set -u; fi
    bash "$KIT/install.sh" "$VENV" "$ROOT/build/ros2_cli_kit" ) 2>&1 |
    { grep -v "^WARNING: Location '.*' is ignored" || true; } ||
    die "installing the ros2 CLI from $KIT failed (see above)."
  cli_env="source build/ros2_cli_kit/install/setup.bash && "
else
  step "no ros2 CLI kit at $KIT: skipping ros2 launch/topic/param (their tests will skip)"
  cli_env=""
fi

step "ready. Put a shell into the environment with:"
echo
echo "    source .venv/bin/activate && ${cli_env}source install/setup.bash"
echo
