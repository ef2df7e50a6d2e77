"""Choose the split point: end-to-end latency per split and codec over a link, against the
LOCAL-ONLY and REMOTE-ONLY (JPEG upload) baselines, under a maximum accuracy drop. Split
``input`` (the model-input image with an image codec, the whole network on the server) is one
more split where both profiles measured it, and so is every temporal codec (a stream: a
keyframe every N frames, ``temporal_codec.py``) both profiles streamed (``temporal``).

latency = edge compute + encode + transfer(bytes) + decode + server compute.
fps (pipelined: edge, link and server work on different frames) = 1000 / slowest stage.
A temporal codec's bytes and encode/decode times are its stream's means per frame (keyframes
included); its keyframe (every N frames, and the first after a switch) takes ``keyframe_ms``
longer than that mean frame.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mtl_split_core.codec import CODECS
from mtl_split_core.errors import InputError
from mtl_split_core.image_codec import INPUT_SPLIT
from mtl_split_core.plan.link import Link
from mtl_split_core.temporal_codec import parse_temporal

TEMPORAL = "temporal"  # the profiles' entry of streamed temporal codecs (plan.profile)


@dataclass
class Option:
    name: str            # "s16 q4-zstd/1", "input webp-q80/1", "LOCAL-ONLY", "REMOTE-ONLY..."
    split: str | None
    codec: str | None
    bytes: float
    edge_ms: float
    link_ms: float
    server_ms: float
    accuracy_drop: float | None = None   # relative drop against the float model (0.01 = 1%)
    keyframe_bytes: float | None = None  # a temporal codec's keyframe (None: not a stream)
    keyframe_ms: float = 0.0             # how much longer its keyframe takes than the mean

    @property
    def latency_ms(self) -> float:
        return self.edge_ms + self.link_ms + self.server_ms

    @property
    def worst_latency_ms(self) -> float:
        """The latency of the slowest frame: a temporal codec's keyframe."""
        return self.latency_ms + max(0.0, self.keyframe_ms)

    @property
    def fps(self) -> float:
        return 1000.0 / max(self.edge_ms, self.link_ms, self.server_ms, 1e-6)


def options(edge_profile: dict[str, Any], server_profile: dict[str, Any], link: Link,
            accuracy: Mapping[str, float] | None = None) -> list[Option]:
    """Every split x codec both profiles measured (``unmatched`` says which one side lacks),
    image upload (split ``input``) per image codec where both profiles have it, plus the
    baselines. ``accuracy`` maps 'split codec' -> drop."""
    accuracy = accuracy or {}
    out = []
    server_splits = _splits(server_profile, edge_profile)
    for split, e in _splits(edge_profile, server_profile).items():
        s = server_splits.get(split)
        if s is None:
            raise InputError(f"the server profile lacks split {split}: profiles of different "
                             f"models ({edge_profile.get('model')}, "
                             f"{server_profile.get('model')})?")
        for codec, c in e["codecs"].items():
            if codec not in s["codecs"]:
                continue  # measured on the robot only (``unmatched``)
            dec = s["codecs"][codec]["decode_ms"]
            out.append(Option(f"{split} {codec}", split, codec, c["bytes"],
                              e["edge_ms"] + c["encode_ms"], link.transfer_ms(c["bytes"]),
                              dec + s["server_ms"], accuracy.get(f"{split} {codec}")))
    out += _temporal_options(edge_profile, server_profile, link, accuracy)
    out.append(Option("LOCAL-ONLY", None, None, 0.0, edge_profile["whole_ms"], 0.0, 0.0, 0.0))
    jpeg_e, jpeg_s = edge_profile["jpeg"], server_profile["jpeg"]
    out.append(Option("REMOTE-ONLY (JPEG q90)", None, "jpeg", jpeg_e["bytes"],
                      jpeg_e["encode_ms"], link.transfer_ms(jpeg_e["bytes"]),
                      jpeg_s["decode_ms"] + server_profile["whole_ms"], 0.0))
    return out


def _temporal_options(edge_profile: dict[str, Any], server_profile: dict[str, Any], link: Link,
                      accuracy: Mapping[str, float]) -> list[Option]:
    """A temporal codec per split both profiles streamed: the edge's network + the stream's
    mean encode, its mean bytes, the server's mean decode + network; the keyframe's extra
    time from both sides' keyframe means; fidelity from ``temporal_drop``."""
    out = []
    theirs = _streams(server_profile)
    for (split, codec), t in _streams(edge_profile).items():
        ts = theirs.get((split, codec))
        if ts is None or split not in edge_profile["splits"] or \
                split not in server_profile["splits"]:
            continue  # ``unmatched`` says why
        e, s = edge_profile["splits"][split], server_profile["splits"][split]
        key = t["keyframe"]
        mean = Option(f"{split} {codec}", split, codec, t["bytes"], e["edge_ms"] + t["encode_ms"],
                      link.transfer_ms(t["bytes"]), ts["decode_ms"] + s["server_ms"],
                      temporal_drop(split, codec, t, accuracy), key["bytes"])
        keyframe_latency = (e["edge_ms"] + key["encode_ms"] + link.transfer_ms(key["bytes"])
                            + ts["keyframe"]["decode_ms"] + s["server_ms"])
        out.append(dataclasses.replace(mean, keyframe_ms=keyframe_latency - mean.latency_ms))
    return out


def _streams(profile: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """(split, temporal codec) -> its stream measurement in ``profile`` ({} without any)."""
    entry = profile.get(TEMPORAL) or {}
    return {(split, codec): c for split, e in entry.get("splits", {}).items()
            for codec, c in e.get("codecs", {}).items()}


def temporal_drop(split: str, codec: str, stream: Mapping[str, Any],
                  accuracy: Mapping[str, float]) -> float | None:
    """A temporal codec's accuracy drop: its own measured row if ``accuracy`` has one, else
    its base codec's drop combined with what the stream lost against that base on the
    profile's sequences (``accuracy_vs_base``; a stream that scored higher counts as equal:
    it never rates above its base). None when the base has no measured drop."""
    own = accuracy.get(f"{split} {codec}")
    if own is not None:
        return own
    base = accuracy.get(f"{split} {parse_temporal(codec).base}")
    vs_base = stream.get("accuracy_vs_base")
    if base is None or vs_base is None:
        return None
    return 1.0 - (1.0 - base) * (1.0 - max(0.0, float(vs_base)))


def _splits(profile: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    """``profile``'s split entries, with ``input`` when ``other`` measured it too (older
    profiles did not), for the image codecs both measured (a Pillow may lack AVIF)."""
    splits = dict(profile["splits"])
    mine, theirs = profile.get(INPUT_SPLIT), other.get(INPUT_SPLIT)
    if mine and theirs:
        splits[INPUT_SPLIT] = {**mine, "codecs": {c: v for c, v in mine["codecs"].items()
                                                  if c in theirs["codecs"]}}
    return splits


def unmatched(edge_profile: dict[str, Any], server_profile: dict[str, Any]) -> dict[str, str]:
    """The options only one of the profiles measured ('split codec' -> why it is no option):
    a profile measured before a model had entropy tables, or before image upload existed, or
    on a machine whose Pillow lacks an image format; 'input' when neither has image upload.
    Re-measuring (`mtl-split profile`) brings them in."""
    out = {}
    for mine, other_side, theirs in ((edge_profile, "server", server_profile),
                                     (server_profile, "robot", edge_profile)):
        for split, entry in mine["splits"].items():
            for codec in entry["codecs"]:
                if codec not in theirs["splits"].get(split, {}).get("codecs", {}):
                    out[f"{split} {codec}"] = f"the {other_side} profile lacks it"
        upload = mine.get(INPUT_SPLIT)
        if upload and not theirs.get(INPUT_SPLIT):
            for codec in upload["codecs"]:
                out[f"{INPUT_SPLIT} {codec}"] = (f"the {other_side} profile has no image upload "
                                                 f"({INPUT_SPLIT}) entry")
        elif upload:
            for codec in set(upload["codecs"]) - set(theirs[INPUT_SPLIT]["codecs"]):
                out[f"{INPUT_SPLIT} {codec}"] = f"the {other_side} profile lacks it"
    if not edge_profile.get(INPUT_SPLIT) and not server_profile.get(INPUT_SPLIT):
        out[INPUT_SPLIT] = ("neither profile has an image upload (input) entry (measured before "
                            "it existed: re-measure them with `mtl-split profile`)")
    for mine, other_side, theirs in ((edge_profile, "server", server_profile),
                                     (server_profile, "robot", edge_profile)):
        for split, codec in set(_streams(mine)) - set(_streams(theirs)):
            out[f"{split} {codec}"] = (f"the {other_side} profile did not stream it" if
                                       theirs.get(TEMPORAL) else f"the {other_side} profile "
                                       f"has no {TEMPORAL} entry (`mtl-split profile "
                                       "--sequences N` streams the temporal codecs)")
    if not edge_profile.get(TEMPORAL) and not server_profile.get(TEMPORAL):
        out[TEMPORAL] = (f"neither profile has a {TEMPORAL} entry (temporal codecs streamed "
                         "over sim sequences: re-measure them with `mtl-split profile`)")
    return out


def unweighable(split: str, codec: str, accuracy: Mapping[str, float] | None) -> str | None:
    """Why option ``split codec`` cannot be weighed against the others (None: it can). With
    measured accuracy (``accuracy_drops``) every option needs its own row. Without any, only
    the fixed-bit feature codecs (f16, q8, q4) rank without one, by their bits; an
    entropy-coded or image codec's fidelity is known from its measured accuracy only (a
    temporal codec's: ``_stream_unweighable``)."""
    if accuracy:
        return None if f"{split} {codec}" in accuracy else "no measured accuracy for it"
    if codec in CODECS:
        return None
    return ("no measured accuracy (`mtl-split eval --into-card`, or --accuracy / the edge's "
            "accuracy_file)")


def choose(opts: list[Option], max_drop: float = 0.01, allow_unknown: bool = False) -> Option:
    """Lowest latency among options with accuracy drop <= max_drop. Options whose drop was
    not measured qualify only with ``allow_unknown`` (no accuracy was measured at all), and
    then only the fixed-bit feature codecs (``unweighable``); the baselines run the float
    model."""
    ok = [o for o in opts if (o.accuracy_drop is not None and o.accuracy_drop <= max_drop) or
          (o.accuracy_drop is None and allow_unknown
           and unweighable(str(o.split), str(o.codec), None) is None)]
    if not ok:
        raise InputError(f"no option has an accuracy drop <= {max_drop:g}")
    return min(ok, key=lambda o: o.latency_ms)


def left_out(edge_profile: dict[str, Any], server_profile: dict[str, Any],
             accuracy: Mapping[str, float] | None) -> dict[str, str]:
    """Every split option measured by a profile that is never chosen, 'split codec' -> why:
    ``unmatched`` (one profile lacks it) and ``unweighable`` (no accuracy to weigh it by)."""
    out = unmatched(edge_profile, server_profile)
    for o in options(edge_profile, server_profile, Link(1e6), accuracy):
        if o.split is None:
            continue
        why = (_stream_unweighable(o, accuracy) if o.keyframe_bytes is not None else
               unweighable(o.split, str(o.codec), accuracy))
        if why is not None:
            out[o.name] = why
    return out


def _stream_unweighable(option: Option, accuracy: Mapping[str, float] | None) -> str | None:
    """Why temporal ``option`` cannot be weighed (None: it can, ``temporal_drop`` gave it a
    drop): its fidelity comes from its base's measured accuracy only."""
    if option.accuracy_drop is not None:
        return None
    base = parse_temporal(option.codec).base
    if not accuracy:
        return f"no measured accuracy (its base {base}'s: `mtl-split eval --into-card`)"
    return (f"no measured accuracy for its base {base} (a stream is weighed by its base's "
            "accuracy and what it lost against it on the profile's sequences)")


def accuracy_drops(eval_results: list[dict[str, Any]]) -> dict[str, float]:
    """'split codec' -> worst relative drop over mAP@0.5, mIoU and delta<1.25 against the
    float results, from ``mtl-split eval --out`` results (one run, or several concatenated).
    With float rows of several splits (a model trained for several) the reference per metric
    is the best of them: a split is as far from the model's best as its drop says."""
    keys = (("detection", "mAP50"), ("segmentation", "mIoU"), ("depth", "delta1"))
    floats = [r for r in eval_results if r.get("codec") == "float"]
    if not floats:
        raise InputError("accuracy results have no 'float' row (run `mtl-split eval --codec all`)")
    ref = {(task, metric): max(r[task][metric] for r in floats if task in r)
           for task, metric in keys if any(task in r for r in floats)}
    drops = {}
    for r in eval_results:
        if r["codec"] == "float":
            continue
        worst = 0.0
        for (task, metric), best in ref.items():
            if task in r and best:
                worst = max(worst, (best - r[task][metric]) / best)
        drops[f"{r['split']} {r['codec']}"] = worst
    return drops


def load_accuracy_drops(path: str | Path) -> dict[str, float]:
    """``accuracy_drops`` of a ``mtl-split eval --out`` JSON file (a list of results), or of
    a model card's ``metrics`` (a model folder or its card.json, `mtl-split eval
    --into-card`); InputError, without the path (the caller names its option), when it is
    neither."""
    try:
        path = Path(path)
        results = json.loads((path / "card.json" if path.is_dir() else path).read_text())
        if isinstance(results, dict) and "card_version" in results:
            drops = card_accuracy_drops(results)
            if drops is None:
                raise InputError("a model card without metrics (`mtl-split eval "
                                 "--into-card` writes them)")
            return drops
        if not isinstance(results, list):
            raise InputError("expected a list of results or a model card")
        return accuracy_drops(results)
    except (InputError, OSError, ValueError, TypeError, KeyError, AttributeError) as err:
        raise InputError(f"not usable `mtl-split eval --out` results: {err}") from None


def card_accuracy_drops(card: dict[str, Any]) -> dict[str, float] | None:
    """``accuracy_drops`` of a card's own evaluation rows (``metrics``), None without any
    (older cards): the edge's accuracy floor by default."""
    from mtl_split_core.model.card import card_metrics

    results = card_metrics(card)
    return accuracy_drops(results) if results else None


def write_csv(opts: list[Option], path: str | Path, link: Link) -> None:
    """One row per option, with the link it was computed for."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["option", "split", "codec", "bytes", "edge_ms", "link_ms", "server_ms",
                    "latency_ms", "fps", "accuracy_drop", "keyframe_latency_ms", "link"])
        for o in opts:
            d = asdict(o)
            w.writerow([o.name, d["split"], d["codec"], f"{o.bytes:.0f}", f"{o.edge_ms:.2f}",
                        f"{o.link_ms:.2f}", f"{o.server_ms:.2f}", f"{o.latency_ms:.2f}",
                        f"{o.fps:.1f}", "" if o.accuracy_drop is None else o.accuracy_drop,
                        "" if o.keyframe_bytes is None else f"{o.worst_latency_ms:.2f}",
                        str(link)])


def table(opts: list[Option], chosen: Option) -> str:
    """A Markdown table of the options, fastest first, the chosen one marked. A temporal
    codec's row is its stream's mean frame; "keyframe ms" is the latency of its keyframes."""
    lines = ["| option | bytes | edge ms | link ms | server ms | latency ms | keyframe ms | fps "
             "| acc. drop |", "|---|---|---|---|---|---|---|---|---|"]
    for o in sorted(opts, key=lambda o: o.latency_ms):
        mark = " **<- chosen**" if o is chosen else ""
        drop = "?" if o.accuracy_drop is None else f"{o.accuracy_drop:.1%}"
        key = "" if o.keyframe_bytes is None else f"{o.worst_latency_ms:.1f}"
        lines.append(f"| {o.name}{mark} | {o.bytes:.0f} | {o.edge_ms:.1f} | {o.link_ms:.1f} | "
                     f"{o.server_ms:.1f} | {o.latency_ms:.1f} | {key} | {o.fps:.1f} | {drop} |")
    return "\n".join(lines)
