"""The planner's figure: latency per split over a few links, and bytes per frame per codec."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mtl_split_core.plan.link import Link
from mtl_split_core.plan.planner import options

# Links drawn in the latency panel: a slow, a typical and a fast wireless link.
PLOT_LINKS = ("5mbit,10ms", "20mbit,10ms", "100mbit,5ms")


def plot_plan(edge_profile: dict[str, Any], server_profile: dict[str, Any], path: str | Path,
              accuracy: dict[str, float] | None = None,
              links: tuple[str, ...] = PLOT_LINKS) -> None:
    """Write a PNG: end-to-end latency per split (q8/q4) for each link against the local-only
    and JPEG-upload baselines, and the bytes on the wire per split and codec."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    splits = list(edge_profile["splits"])
    for spec in links:
        opts = options(edge_profile, server_profile, Link.parse(spec), accuracy)
        for codec, style in (("q8-zstd/1", "-o"), ("q4-zstd/1", "--s")):
            ys = [next(o.latency_ms for o in opts if o.split == s and o.codec == codec)
                  for s in splits]
            ax1.plot(splits, ys, style, label=f"{spec} {codec.split('-')[0]}")
        remote = next(o for o in opts if o.name.startswith("REMOTE"))
        ax1.axhline(remote.latency_ms, ls=":", lw=1, color=ax1.lines[-1].get_color())
    ax1.axhline(edge_profile["whole_ms"], color="k", lw=1.5, label="local only")
    ax1.set(xlabel="split point", ylabel="end-to-end latency (ms)", yscale="log",
            title="latency per split (dotted: JPEG upload)")
    ax1.legend(fontsize=7)
    for codec in ("f16-zstd/1", "q8-zstd/1", "q4-zstd/1"):
        ax2.plot(splits, [edge_profile["splits"][s]["codecs"][codec]["bytes"] / 1e3
                          for s in splits], "-o", label=codec)
    ax2.axhline(edge_profile["jpeg"]["bytes"] / 1e3, color="k", ls="--", label="JPEG q90")
    ax2.set(xlabel="split point", ylabel="KB per frame", yscale="log", title="bytes on the wire")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
