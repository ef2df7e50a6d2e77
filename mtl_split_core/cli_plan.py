"""`mtl-split profile` and `mtl-split plan`: measure, then choose where to split."""

from __future__ import annotations

import json
from pathlib import Path

PLOT_LINKS = ("5mbit,10ms", "20mbit,10ms", "100mbit,5ms")


def add_profile_arguments(p) -> None:
    p.add_argument("--model", default="")
    p.add_argument("--device", default="cpu")
    p.add_argument("--frames", type=int, default=6, help="sim frames (640x480) to measure on")
    p.add_argument("--images", default=None,
                   help="npz of JPEG frames to use instead of rendering (bench/frames.npz)")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--out", required=True, help="profile JSON to write")


def run_profile(args) -> int:
    from mtl_split_core.plan.profile import load_jpeg_frames, measure_profile, save_profile
    from mtl_split_core.runtime.device import resolve_device
    from mtl_split_core.runtime.models import load_model_param

    model, card = load_model_param(args.model)
    if getattr(args, "images", None):
        frames = load_jpeg_frames(args.images)[:args.frames]
    else:
        from mtl_split_core.sim.scene import SimScene
        with SimScene(21, 640, 480) as scene:
            frames = [scene.render().rgb for _ in range(args.frames)]
    profile = measure_profile(model, card, frames, str(resolve_device(args.device)),
                              args.repeats)
    save_profile(profile, args.out)
    print(f"profile of {profile['model']} on {profile['device']} -> {args.out}")
    return 0


def add_arguments(p) -> None:
    p.add_argument("--model", default="", help="model to profile here if no profile is given")
    p.add_argument("--edge-profile", default=None, help="profile JSON measured on the robot")
    p.add_argument("--server-profile", default=None, help="profile JSON measured on the server")
    p.add_argument("--edge-device", default="cpu", help="device to measure the edge on here")
    p.add_argument("--server-device", default="cpu")
    p.add_argument("--link", default="20mbit,10ms", help="BANDWIDTH,RTT[,LOSS] e.g. 20mbit,10ms,1%%")
    p.add_argument("--accuracy", default=None, help="JSON from `mtl-split eval --out`")
    p.add_argument("--max-drop", type=float, default=0.01, help="max relative accuracy drop")
    p.add_argument("--out", default="plan_out", help="folder for plan.csv and plan.png")


def run(args) -> int:
    from mtl_split_core.plan.link import Link
    from mtl_split_core.plan.planner import accuracy_drops, choose, options, table, write_csv
    from mtl_split_core.plan.profile import load_profile

    link = Link.parse(args.link)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    profiles = {}
    for side, given, device in (("edge", args.edge_profile, args.edge_device),
                                ("server", args.server_profile, args.server_device)):
        if given:
            profiles[side] = load_profile(given)
        else:
            path = out / f"{side}_profile.json"
            ns = type("A", (), {"model": args.model, "device": device, "frames": 4,
                                "repeats": 8, "out": str(path), "images": None})
            run_profile(ns)
            profiles[side] = load_profile(path)
    drops = accuracy_drops(json.loads(Path(args.accuracy).read_text())) if args.accuracy \
        else None
    opts = options(profiles["edge"], profiles["server"], link, drops)
    chosen = choose(opts, args.max_drop, allow_unknown=drops is None)
    print(f"link: {link}; edge: {profiles['edge']['device']}; server: "
          f"{profiles['server']['device']}")
    if drops is None:
        print("no --accuracy given: split options are not filtered by accuracy")
    print(table(opts, chosen))
    print(f"\nchosen: {chosen.name} ({chosen.latency_ms:.1f} ms, {chosen.fps:.1f} fps)")
    write_csv(opts, out / "plan.csv", link)
    plot(profiles, out / "plan.png", drops)
    print(f"wrote {out / 'plan.csv'} and {out / 'plan.png'}")
    return 0


def plot(profiles, path, drops) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mtl_split_core.plan.link import Link
    from mtl_split_core.plan.planner import options

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    splits = list(profiles["edge"]["splits"])
    for spec in PLOT_LINKS:
        link = Link.parse(spec)
        opts = options(profiles["edge"], profiles["server"], link, drops)
        for codec, style in (("q8-zstd/1", "-o"), ("q4-zstd/1", "--s")):
            ys = [next(o.latency_ms for o in opts if o.split == s and o.codec == codec)
                  for s in splits]
            ax1.plot(splits, ys, style, label=f"{spec} {codec.split('-')[0]}")
        remote = next(o for o in opts if o.name.startswith("REMOTE"))
        ax1.axhline(remote.latency_ms, ls=":", lw=1, color=ax1.lines[-1].get_color())
    local = profiles["edge"]["whole_ms"]
    ax1.axhline(local, color="k", lw=1.5, label="local only")
    ax1.set(xlabel="split point", ylabel="end-to-end latency (ms)", yscale="log",
            title="latency per split (dotted: JPEG upload)")
    ax1.legend(fontsize=7)
    for codec in ("f16-zstd/1", "q8-zstd/1", "q4-zstd/1"):
        ax2.plot(splits, [profiles["edge"]["splits"][s]["codecs"][codec]["bytes"] / 1e3
                          for s in splits], "-o", label=codec)
    ax2.axhline(profiles["edge"]["jpeg"]["bytes"] / 1e3, color="k", ls="--", label="JPEG q90")
    ax2.set(xlabel="split point", ylabel="KB per frame", yscale="log", title="bytes on the wire")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
