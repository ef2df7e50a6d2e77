"""`mtl-split profile`: measure a model's per-split timings and bytes on one device."""

from mtl_split_core.cli_plan import add_profile_arguments as add_arguments  # noqa: F401
from mtl_split_core.cli_plan import run_profile as run  # noqa: F401
