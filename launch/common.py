"""What the mtl_split launch files share (not a launch file itself).

Every parameter default lives once, in config/*.yaml: launch arguments default to '' and become
parameter overrides only when the user gives them. Edge and server are required nodes: when one
exits, the whole launch ends, and with a non-zero exit code when the node failed. Every launch
file starts with ``dds_profile()``: the processes it starts use config/fastdds.xml unless the
user chose a transport set-up.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

from ament_index_python.packages import get_package_share_directory
from launch import LaunchContext
from launch.actions import (
    DeclareLaunchArgument,
    OpaqueFunction,
    SetEnvironmentVariable,
    Shutdown,
)
from launch.events.process import ProcessExited
from launch.substitutions import LaunchConfiguration

SHARE = get_package_share_directory("mtl_split")
CONFIG = os.path.join(SHARE, "config")
DDS_PROFILE = os.path.join(CONFIG, "fastdds.xml")
# Set by a user who chose the Fast DDS set-up already: then the launch leaves it alone.
DDS_USER_VARIABLES = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE",
                      "FASTDDS_BUILTIN_TRANSPORTS")

# One description per argument, used by every launch file that declares it.
DESCRIPTIONS = {
    "namespace": "Robot namespace for the nodes and their topics ('' = none).",
    "model": "Model folder or card file; edge and server need the same ('' = params file).",
    "device": "auto (CUDA if present, else CPU), cpu, cuda or cuda:N ('' = params file).",
    "split": "Split point: name (s4, s8, s16, s32) or index (0..3) ('' = params file, "
             "whose '' is the model's default).",
    "codec": "Feature codec: f16-zstd/1, q8-zstd/1, q4-zstd/1, with entropy tables in the "
             "card eb-<k>/1 or ebc-<k>/1, temporal t<N>-s<T>-<codec>/1 or t<N>-c<H>-ebc-<k>/1 "
             "(docs/CONTRACTS.md); split input: an image codec like webp-q80/1 "
             "('' = params file).",
    "input_transport": "raw (sensor_msgs/Image on `image`) or compressed "
                       "(sensor_msgs/CompressedImage on `image`/compressed) ('' = params file).",
    "input_qos": "QoS of the image subscription: reliable, sensor_data, best_effort or "
                 "reliable_transient_local; see README 'which input QoS' ('' = params file).",
    "image": "Image topic to subscribe, e.g. /camera/image_raw ('' = `image` in the namespace; "
             "with compressed transport the node reads <image>/compressed).",
    "camera_info": "CameraInfo topic ('' = `camera_info` in the namespace).",
    "score_threshold": "Minimum detection score, 0..1 ('' = params file).",
    "auth_key_file": "HMAC key file (mtl-split keygen; docs/SECURITY.md): the edge signs its "
                     "features, the server accepts only signed ones ('' = params file, off).",
    "backend": "Inference runtime: torch or onnxruntime (the model's ONNX export; see "
               "docs/DEPLOY.md) ('' = params file).",
    "onnx_dir": "ONNX export folder for backend onnxruntime ('' = params file, whose '' is "
                "the model folder's onnx/).",
    "fallback_after": "Seconds without server feedback before the edge runs the whole network "
                      "itself (at least 3x the answers' p99 delay; until a server answers it "
                      "does too; 0 = never) ('' = params file).",
    "engine_cache": "TensorRT engine cache folder for onnxruntime's TensorRT provider "
                    "('' = params file).",
    "use_sim_time": "true: follow /clock (bag replay with --clock, simulators) ('' = false).",
    "pool": "true: send to a server chosen from the pool's announcements (docs/POOL.md; needs "
            "a namespace) ('' = params file: false).",
    "dds_profile": "Fast DDS XML profile of the started processes: a path, 'none' (the "
                   "environment's set-up, else Fast DDS's defaults) or '' = the shipped "
                   "config/fastdds.xml (UDP with 4 MB buffers: fast restart, fast large images; "
                   "docs/DEPLOY.md) unless the environment sets FASTDDS_DEFAULT_PROFILES_FILE "
                   "or FASTDDS_BUILTIN_TRANSPORTS.",
}


def declare(names: Iterable[str], **defaults: str) -> list[DeclareLaunchArgument]:
    """DeclareLaunchArgument for each name, default '' unless given in ``defaults``."""
    return [DeclareLaunchArgument(n, default_value=defaults.get(n, ""),
                                  description=DESCRIPTIONS[n]) for n in names]


def dds_profile() -> list:
    """The ``dds_profile`` argument and the environment it gives every process started after it
    (first in each launch file's description, so the nodes see it)."""
    return [*declare(["dds_profile"]), OpaqueFunction(function=_dds_environment)]


def _dds_environment(context: LaunchContext) -> list:
    choice = LaunchConfiguration("dds_profile").perform(context)
    if choice == "":
        if any(os.environ.get(v) for v in DDS_USER_VARIABLES):
            return []  # the user's own set-up
        choice = DDS_PROFILE
    if choice == "none":
        return []  # the environment's set-up, else Fast DDS's defaults
    if not os.path.isfile(choice):
        raise RuntimeError(f"dds_profile:={choice}: no such file (a Fast DDS XML profile, "
                           "'none' or '')")
    return [SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE", choice)]


def given(context: LaunchContext, names: Iterable[str]) -> dict[str, LaunchConfiguration]:
    """The arguments among ``names`` the user set (non-empty), as parameter overrides.

    Passed as substitutions, which launch_ros reads as YAML (a plain str it would pass as a
    string): score_threshold:=0.5 is a double, split:=2 an integer, use_sim_time:=true a bool.
    """
    return {n: LaunchConfiguration(n) for n in names
            if LaunchConfiguration(n).perform(context) != ""}


def params_files(context: LaunchContext, argument: str, shipped: str,
                 overrides: dict[str, LaunchConfiguration]) -> list:
    """Node ``parameters``: the user's params file (else the shipped one), then overrides."""
    params_file = LaunchConfiguration(argument).perform(context) or shipped
    return [params_file] + ([overrides] if overrides else [])


def topic_remaps(context: LaunchContext) -> list[tuple[str, str]]:
    """Remaps for the user's image / camera_info topics (image_transport's /compressed too)."""
    remaps = []
    image = LaunchConfiguration("image").perform(context)
    if image:
        remaps += [("image", image), ("image/compressed", image.rstrip("/") + "/compressed")]
    camera_info = LaunchConfiguration("camera_info").perform(context)
    if camera_info:
        remaps.append(("camera_info", camera_info))
    return remaps


def required(node_name: str) -> Callable[[ProcessExited, LaunchContext], list]:
    """``on_exit`` for a node the pipeline cannot run without.

    A Shutdown action alone ends the launch with exit code 0. `ros2 launch` returns non-zero only
    when an exception reaches the launch service's loop, which logs it as one line ("Caught
    exception in launch ...: <message>"), shuts everything down and returns 1.
    """
    def on_exit(event: ProcessExited, context: LaunchContext) -> list:
        # A failure counts during a shutdown too (e.g. a node that had to be killed).
        if event.returncode != 0:
            raise RuntimeError(f"required node {node_name} exited with code {event.returncode}; "
                               "shutting the launch down")
        if context.is_shutdown:  # Ctrl-C or another node's exit: ending is what was asked
            return []
        return [Shutdown(reason=f"required node {node_name} exited")]
    return on_exit
