"""`mtl-split plan`: choose the split point for a link from measured (or measured-here)
profiles, optionally filtered by the accuracy `mtl-split eval` measured."""

from __future__ import annotations

import argparse
from pathlib import Path

from mtl_split_core.cli.arguments import non_negative_float, output_folder

# Measuring a missing profile here: fewer frames and repeats than `mtl-split profile`.
QUICK_FRAMES = 4
QUICK_REPEATS = 8


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="", help="model to profile here if no profile is given")
    p.add_argument("--edge-profile", default=None, help="profile JSON measured on the robot")
    p.add_argument("--server-profile", default=None, help="profile JSON measured on the server")
    p.add_argument("--edge-device", default="cpu", help="device to measure the edge on here")
    p.add_argument("--server-device", default="cpu")
    p.add_argument("--link", default="20mbit,10ms",
                   help="BANDWIDTH,RTT[,LOSS] e.g. 20mbit,10ms,1%%")
    p.add_argument("--accuracy", default=None, help="JSON from `mtl-split eval --out`, or a "
                   "model folder / card.json with metrics; default: --model's card metrics "
                   "(`mtl-split eval --into-card`)")
    p.add_argument("--max-drop", type=non_negative_float, default=0.01,
                   help="max relative accuracy drop")
    p.add_argument("--out", type=output_folder, default="plan_out",
                   help="folder for plan.csv and plan.png")


def _profiles(args: argparse.Namespace, out: Path) -> dict[str, dict]:
    """The robot's ("edge") and the server's profile: given, or measured here now. One
    measurement per device: with both sides on this machine's same device the two are one
    profile (measured twice, the same network on the same CPU came out 866 ms as LOCAL-ONLY and
    6,157 ms as the server's under a changing load, so local and image upload disagreed).
    Measured here, a profile holds this machine's times at this moment: every run measures
    anew unless the saved file is passed back."""
    from mtl_split_core.cli.profile import profile_model
    from mtl_split_core.plan.profile import load_profile, save_profile

    profiles: dict[str, dict] = {}
    measured: dict[str, tuple[dict, Path]] = {}  # device -> the profile measured here
    for side, given, device in (("edge", args.edge_profile, args.edge_device),
                                ("server", args.server_profile, args.server_device)):
        if given:
            profiles[side] = load_profile(given)
            continue
        if device not in measured:
            path = out / f"{side}_profile.json"
            profile = profile_model(args.model, device, QUICK_FRAMES, QUICK_REPEATS)
            save_profile(profile, path)
            measured[device] = profile, path
        profiles[side], path = measured[device]
        print(f"{side} profile: measured here now on {device} ({profiles[side]['device']}; "
              f"{QUICK_FRAMES} frames, {QUICK_REPEATS} repeats), not a robot's or a server's: "
              f"every run measures anew; reuse it with --{side}-profile {path}")
    return profiles


def run(args: argparse.Namespace) -> int:
    from mtl_split_core.errors import InputError
    from mtl_split_core.model.card import ModelLoadError, read_card
    from mtl_split_core.plan.link import Link
    from mtl_split_core.plan.planner import (
        card_accuracy_drops,
        choose,
        left_out,
        load_accuracy_drops,
        options,
        table,
        write_csv,
    )
    from mtl_split_core.plan.plot import plot_plan
    from mtl_split_core.runtime.model_files import resolve_model_path

    link = Link.parse(args.link)
    drops: dict[str, float] | None
    if args.accuracy:
        try:
            drops = load_accuracy_drops(args.accuracy)
        except InputError as err:
            raise InputError(f"accuracy {args.accuracy}: {err}") from None
    else:  # the model's own evaluation rows, where `mtl-split eval --into-card` wrote them
        try:
            folder = resolve_model_path(args.model)
            drops = card_accuracy_drops(read_card(folder))
        except (FileNotFoundError, ModelLoadError) as err:
            raise InputError(f"--model {args.model or 'default'}: {err}") from None
        if drops is not None:
            print(f"accuracy: the metrics in the card of {folder}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    profiles = _profiles(args, out)
    opts = options(profiles["edge"], profiles["server"], link, drops)
    chosen = choose(opts, args.max_drop, allow_unknown=drops is None)
    print(f"link: {link}; edge: {profiles['edge']['device']}; server: "
          f"{profiles['server']['device']}")
    if drops is None:
        print("no measured accuracy (--accuracy, or the card's metrics): feature codecs with "
              "fixed bits are not filtered by accuracy")
    for name, why in left_out(profiles["edge"], profiles["server"], drops).items():
        print(f"not an option: {name}: {why}")
    print(table(opts, chosen))
    print(f"\nchosen: {chosen.name} ({chosen.latency_ms:.1f} ms, {chosen.fps:.1f} fps)")
    write_csv(opts, out / "plan.csv", link)
    plot_plan(profiles["edge"], profiles["server"], out / "plan.png", drops)
    print(f"wrote {out / 'plan.csv'} and {out / 'plan.png'}")
    return 0
