"""results.json -> results.md (tables) and rate_accuracy.png (curves per task)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from analysis import ALL, baseline_curves, best_baseline, scored

METRIC_NAMES = {"mAP50": "mAP@0.5", "mIoU": "mIoU", "delta1": "δ<1.25", ALL: "all three"}
FAMILY_ORDER = {"reference": 0, "ours": 1, "image": 2, "video": 3}


def _num(v: float | None, fmt: str = ".3f") -> str:
    return "–" if v is None else format(v, fmt)


def _bytes(b: dict) -> str:
    if b["bytes"] is None:
        return "not reached"
    return f"{'≤' if b['bound'] == '<=' else ''}{b['bytes']:,.0f}"


def _ratio(b: dict) -> str:
    if b["ratio"] is None:
        return "ours wins"
    r = b["ratio"]
    mark = "≥" if b["bound"] == "<=" else ""
    return f"{mark}{r:.2f}x" + (" (baseline wins)" if r > 1 else "")


def _rows_table(rows: list[dict], metrics: dict[str, str]) -> list[str]:
    head = " | ".join(METRIC_NAMES.get(m, m) for m in metrics.values())
    lines = [f"| method | bytes/frame | {head} |",
             "|---|---:|" + "---:|" * len(metrics)]
    for r in sorted(rows, key=lambda r: (FAMILY_ORDER.get(r["family"], 9),
                                         r.get("bytes_per_frame") or 0)):
        if "skipped" in r:
            lines.append(f"| {r['label']} | skipped: {r['skipped'][:80]} |" + " |" * len(metrics))
            continue
        cells = " | ".join(_num(r.get(m)) for m in metrics.values())
        name = f"{r['label']} {r.get('note', '')}".strip()
        lines.append(f"| {name} | {r['bytes_per_frame']:,.0f} | {cells} |")
    return lines


def _equal_table(entries: list[dict], metrics: dict[str, str], kind: str) -> list[str]:
    cols = [*metrics.values(), ALL]
    lines = ["| ours | bytes/frame | " + " | ".join(
        f"best {kind} at equal {METRIC_NAMES.get(m, m)}: bytes (ours/theirs)" for m in cols)
        + " |", "|---|---:|" + "---|" * len(cols)]
    for e in entries:
        cells = []
        for m in cols:
            best = best_baseline(e, m)
            cells.append("none reaches it" if best is None else
                         f"{best[0]} {_bytes(best[1])} ({_ratio(best[1])})")
        lines.append(f"| {e['ours']} | {e['bytes_per_frame']:,.0f} | " + " | ".join(cells) +
                     " |")
    return lines


def _default_vs_each(entries: list[dict], label: str, metrics: dict[str, str]) -> list[str]:
    entry = next((e for e in entries if e["ours"] == label), None)
    if entry is None:
        return []
    cols = [*metrics.values(), ALL]
    lines = [f"Bytes each baseline needs to come within the tolerance of **{label}** "
             f"({entry['bytes_per_frame']:,.0f} B/frame) on each metric (ours/theirs):", "",
             "| baseline | " + " | ".join(METRIC_NAMES.get(m, m) for m in cols) + " |",
             "|---|" + "---|" * len(cols)]
    for name, per in entry["baselines"].items():
        lines.append(f"| {name} | " + " | ".join(
            f"{_bytes(per[m])} ({_ratio(per[m])})" for m in cols) + " |")
    return lines


def _bd_table(bd: list[dict], metrics: dict[str, str]) -> list[str]:
    lines = ["| ours | anchor | " + " | ".join(METRIC_NAMES.get(m, m)
                                               for m in metrics.values()) + " |",
             "|---|---|" + "---:|" * len(metrics)]
    pairs: dict[tuple[str, str], dict[str, str]] = {}
    for b in bd:
        pairs.setdefault((b["ours"], b["anchor"]), {})[b["metric"]] = b["text"]
    for (ours, anchor), cells in pairs.items():
        lines.append(f"| {ours} | {anchor} | " + " | ".join(
            cells.get(m, "–") for m in metrics.values()) + " |")
    return lines


def _frame_set_md(title: str, part: dict, meta: dict, kind: str) -> list[str]:
    metrics = meta["metrics"]
    default = f"split {meta['model']['default_split']} {meta['model']['default_codec']}"
    lines = [f"## {title}", "", *_rows_table(part["rows"], metrics), "",
             f"### Equal accuracy (each metric within {meta['tolerance']})", "",
             *_equal_table(part["equal_accuracy"], metrics, kind), "",
             *_default_vs_each(part["equal_accuracy"], default, metrics), "",
             "### BD-rate (negative: ours needs fewer bytes at the same accuracy)", "",
             *_bd_table(part["bd_rate"], metrics), ""]
    return lines


def _photos_md(ph: dict, stills: dict | None) -> list[str]:
    names = list(ph["photos"])
    sim = {r["label"]: r.get("bytes_per_frame") for r in (stills or {}).get("rows", [])}
    lines = ["## Real photographs (bytes only, no labels)", "",
             "scikit-image's bundled photos (" + ", ".join(
                 f"{n} {w}x{h}" for n, (w, h) in ph["photos"].items()) +
             "), letterboxed to the model input like a camera frame. Last column: the same "
             "method's mean on the sim stills, for the photo/sim ratio.", "",
             "| method | " + " | ".join(names) + " | mean | sim stills | photo/sim |",
             "|---|" + "---:|" * (len(names) + 3)]
    for r in sorted(ph["rows"], key=lambda r: (FAMILY_ORDER[r["family"]], r["codec"], r["mean"])):
        s = sim.get(r["label"])
        ratio = f"{r['mean'] / s:.1f}x" if s else "–"
        lines.append(f"| {r['label']} | " + " | ".join(f"{r['bytes'][n]:,}" for n in names) +
                     f" | {r['mean']:,.0f} | {_num(s, ',.0f')} | {ratio} |")
    return lines


def markdown(results: dict[str, Any]) -> str:
    meta = results["meta"]
    m = meta["model"]
    runs = meta.get("runs") or [meta]
    lines = ["# Rate–accuracy: split features vs image upload and video", ""]
    for run in runs:
        what = f" ({', '.join(run.get('parts') or [])})" if len(runs) > 1 else ""
        lines += [f"Command{what}: `{run['command']}`  ",
                  f"Machine: {run['machine']}  ",
                  f"Date: {run['date']}, {run['elapsed_s']:.0f} s  "]
    if "merged_by" in meta:
        lines.append(f"Merged into one report with: `{meta['merged_by']}`  ")
    lines += [f"Model: {m['name']} (fingerprint `{m['fingerprint']}`), input "
              f"{meta['input_size'][0]}x{meta['input_size'][1]}, default {m['default_split']} "
              f"{m['default_codec']}  ",
              f"Frames: {meta['camera_size'][0]}x{meta['camera_size'][1]} sim camera, scene "
              f"seed {meta['seed']} (scene seeds {meta['scene_seeds']}), "
              f"sensor noise {meta['noise']:g}, letterboxed to the model input  ",
              "Image codecs (Pillow defaults unless listed): " + ", ".join(
                  f"{n} {c['options'] or ''}".strip() for n, c in meta["image_codecs"].items())
              + "  "]
    if meta["video"]:
        lines.append("Video: " + "; ".join(meta["video"].values()) + "  ")
    if meta["unavailable"]:
        lines.append(f"Not available in this build: {', '.join(meta['unavailable'])}  ")
    lines.append("")
    if "stills" in results:
        st = results["stills"]
        lines += _frame_set_md(f"Stills: {st['frames']} frames of {st['scenes']} unseen scenes",
                               st, meta, "image codec")
    if "sequences" in results:
        sq = results["sequences"]
        lines += _frame_set_md(
            f"30 fps sequences: {sq['sequences']} x {sq['frames'] // max(1, sq['sequences'])} "
            f"frames, keyframe every {sq['keyint']}", sq, meta, "video codec")
    if "photos" in results:
        lines += _photos_md(results["photos"], results.get("stills"))
    return "\n".join(lines) + "\n"


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    meta = results["meta"]
    metrics = list(meta["metrics"].values())
    parts = [(k, results[k]) for k in ("stills", "sequences") if k in results]
    fig, axes = plt.subplots(len(parts), len(metrics), figsize=(5.2 * len(metrics),
                                                                4.2 * len(parts)),
                             squeeze=False)
    markers = "osD^v<>p*h"
    for row, (name, part) in enumerate(parts):
        rows = scored(part["rows"])
        ours = [r for r in rows if r["family"] == "ours"]
        splits = sorted({r["setting"] for r in ours})
        ref = next((r for r in rows if r["family"] == "reference"), None)
        for col, metric in enumerate(metrics):
            ax = axes[row][col]
            for codec, pts in baseline_curves(part["rows"]).items():
                pts = sorted(pts, key=lambda r: r["bytes_per_frame"])
                ax.plot([r["bytes_per_frame"] for r in pts], [r[metric] for r in pts],
                        "-", marker=".", label=codec)
            for i, split in enumerate(splits):
                pts = [r for r in ours if r["setting"] == split]
                ax.scatter([r["bytes_per_frame"] for r in pts], [r[metric] for r in pts],
                           marker=markers[i % len(markers)], s=40, color="k", zorder=3,
                           label=f"ours {split}")
                for r in pts:
                    ax.annotate(r["codec"].split("/")[0], (r["bytes_per_frame"], r[metric]),
                                fontsize=6, xytext=(3, 3), textcoords="offset points")
            if ref is not None:
                ax.axhline(ref[metric], color="grey", lw=0.8, ls="--", label="float network")
            ax.set_xscale("log")
            ax.set_xlabel("bytes per frame")
            ax.set_ylabel(METRIC_NAMES.get(metric, metric))
            ax.set_title(f"{name}: {METRIC_NAMES.get(metric, metric)}")
            lo = min((r[metric] for r in rows if r["family"] != "reference"), default=0)
            ax.set_ylim(max(lo - 0.01, (ref or {}).get(metric, 1) - 0.12), None)
            ax.grid(True, which="both", alpha=0.3)
            if col == 0:
                ax.legend(fontsize=7)
    fig.suptitle(f"{meta['model']['name']} ({meta['model']['fingerprint']}), {meta['date']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
