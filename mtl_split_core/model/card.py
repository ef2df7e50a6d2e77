"""Model card + checkpoint: ``<dir>/card.json`` beside ``<dir>/weights.pt``.

The card says what the weights are (backbone, input size, normalisation, classes, split points
with bottleneck sizes, default split, codec, tasks) and carries a fingerprint: a hash of the
stored weights and the split configuration. Edge and server compare fingerprints, so features
from another model (or another bottleneck) are rejected instead of silently decoded wrong.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import torch

from mtl_split_core.model.config import CARD_VERSION, ModelConfig, ModelConfigError
from mtl_split_core.model.network import MultiTaskSplitNet

CARD_FILE, WEIGHTS_FILE = "card.json", "weights.pt"
SUPPORTED_CARD_VERSIONS = (1,)


class ModelLoadError(ValueError):
    """A model folder that cannot be loaded; the message says what is wrong."""


def fingerprint(state: dict[str, torch.Tensor], config: ModelConfig) -> str:
    """16 hex digits over the weights (in stored dtype) and the split-relevant config."""
    h = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach().cpu().contiguous()
        h.update(key.encode())
        h.update(str(t.dtype).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    as_dict = config.to_dict()  # once: each call deep-copies the entropy tables
    split_cfg = {k: as_dict[k] for k in ("backbone", "input_size", "bottlenecks", "tasks",
                                         "mean", "std")}
    # Entropy tables (codecs eb-<k>/1) are part of the wire contract; cards without keep
    # their fingerprint.
    if config.entropy is not None:
        split_cfg["entropy"] = config.entropy
    h.update(json.dumps(split_cfg, sort_keys=True).encode())
    return h.hexdigest()[:16]


def _stored_state(model: MultiTaskSplitNet, fp16: bool) -> dict[str, torch.Tensor]:
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    if fp16:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    return state


def save_model(path: str | Path, model: MultiTaskSplitNet, fp16: bool = True,
               extra: dict | None = None) -> dict:
    """Write ``card.json`` + ``weights.pt`` into the folder ``path``; returns the card."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    state = _stored_state(model, fp16)
    card = {"card_version": CARD_VERSION, **model.config.to_dict(),
            "split_points": [{"name": n, "stride": s, "channels": c,
                              "bottleneck": model.config.bottlenecks.get(n)}
                             for n, s, c in zip(model.split_names, model.backbone.strides,
                                                model.backbone.channels)],
            "weights_dtype": "float16" if fp16 else "float32",
            "fingerprint": fingerprint(state, model.config), **(extra or {})}
    buf = io.BytesIO()
    torch.save(state, buf)
    (path / WEIGHTS_FILE).write_bytes(buf.getvalue())
    (path / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
    return card


def read_card(path: str | Path) -> dict:
    path = Path(path)
    card_path = path / CARD_FILE if path.is_dir() else path
    try:
        card = json.loads(card_path.read_text())
    except FileNotFoundError:
        raise ModelLoadError(f"no model card at {card_path}") from None
    except json.JSONDecodeError as err:
        raise ModelLoadError(f"model card {card_path} is not valid JSON: {err}") from None
    version = card.get("card_version")
    if version not in SUPPORTED_CARD_VERSIONS:
        raise ModelLoadError(f"model card {card_path} has card_version {version!r}; this build "
                             f"reads {SUPPORTED_CARD_VERSIONS}")
    accepted_edges(card)  # a malformed list is the card's error, named at load
    return card


# Fingerprints of the deployed edges a server model also serves: a frozen-edge fine-tune's
# robots keep the edge they run (``mtl-split train --freeze-edge``, per-split servers, entropy
# tables). A list; a card from before lists reads as one fingerprint.
ACCEPTS_EDGE = "accepts_edge_fingerprint"


def accepted_edges(card: dict) -> frozenset[str]:
    """The fingerprints of the edges whose packets this card's server serves: its own and
    those it accepts. ModelLoadError for an ``accepts_edge_fingerprint`` that is neither a
    fingerprint nor a list of them."""
    accepts = card.get(ACCEPTS_EDGE, [])
    accepts = [accepts] if isinstance(accepts, str) else accepts
    if not (isinstance(accepts, list) and all(isinstance(f, str) and f for f in accepts)):
        raise ModelLoadError(f"model card: {ACCEPTS_EDGE} must be a fingerprint or a list of "
                             f"them, got {accepts!r}"[:200])
    return frozenset([card.get("fingerprint", ""), *accepts]) - {""}


def edge_lineage(base: dict) -> list[str]:
    """What a model whose edge is ``base``'s bit for bit accepts: every edge ``base`` serves,
    ``base``'s own included (its robots, and those it kept serving)."""
    return sorted(accepted_edges(base))


def config_from_card(card: dict) -> ModelConfig:
    fields = {k: v for k, v in card.items() if k in ModelConfig.__dataclass_fields__}
    try:
        return ModelConfig.from_dict(fields)
    except (ModelConfigError, TypeError, KeyError) as err:
        raise ModelLoadError(f"model card describes an unusable model: {err}") from None


def load_model(path: str | Path, device: str | torch.device = "cpu"
               ) -> tuple[MultiTaskSplitNet, dict]:
    """Build the network a card describes and load its weights strictly, checking the hash."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    card = read_card(path)
    config = config_from_card(card)
    weights = folder / WEIGHTS_FILE
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ModelLoadError(f"weights file {weights} is missing") from None
    except Exception as err:  # noqa: BLE001 - any unreadable file is the same user error
        raise ModelLoadError(f"weights file {weights} is unreadable: {err}") from None
    if fingerprint(state, config) != card.get("fingerprint"):
        raise ModelLoadError(f"weights in {weights} do not match the card's fingerprint "
                             f"{card.get('fingerprint')!r} (edited or mixed-up files)")
    model = MultiTaskSplitNet(config)
    missing, unexpected = [], []
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [k for k in set(own) & set(state) if own[k].shape != state[k].shape]
    if missing or unexpected or shapes:
        raise ModelLoadError(f"weights do not fit a {config.backbone} model as the card "
                             f"describes: missing {missing[:5]}, unexpected {unexpected[:5]}, "
                             f"shape mismatch {shapes[:5]}")
    # load_state_dict copies into the fp32 parameters, converting fp16 on the way: no
    # intermediate fp32 copy of every tensor (a tenth of a second of a restart on this CPU).
    model.load_state_dict(state, strict=True)
    return model.to(device).eval(), card


# --- Evaluation results in the card (`mtl-split eval --into-card`) -------------------------
# ``card["metrics"]`` = {"data": what was evaluated, "split_set": train|val|test, "results":
# [`mtl-split eval --out` rows: split, codec, frames, bytes_per_frame, one dict per task]}.
# Not part of the fingerprint (it says how the weights score, not what they are); cards
# without it (older ones) load as before. The edge's accuracy floor reads it
# (plan/planner.card_accuracy_drops).
METRICS = "metrics"


def card_metrics(card: dict) -> list[dict]:
    """The card's evaluation rows; [] when it has none."""
    metrics = card.get(METRICS)
    results = metrics.get("results") if isinstance(metrics, dict) else None
    return [r for r in results if isinstance(r, dict)] if isinstance(results, list) else []


def write_card_metrics(path: str | Path, results: list[dict], data: str, split_set: str
                       ) -> dict:
    """Merge evaluation ``results`` into the card in the model folder ``path``: a row of the
    same split and codec is replaced; rows measured on other data or another split set are
    dropped (one evaluation set per card, so drops compare like with like). The card file
    is replaced atomically; returns the new card."""
    from mtl_split_core.output_folder import atomic_write_text

    card_path = Path(path) / CARD_FILE if Path(path).is_dir() else Path(path)
    card = read_card(card_path)
    old = card.get(METRICS)
    old = old if isinstance(old, dict) else {}
    same_set = old.get("data") == data and old.get("split_set") == split_set
    new_keys = {(r.get("split"), r.get("codec")) for r in results}
    kept = [r for r in card_metrics(card) if same_set and
            (r.get("split"), r.get("codec")) not in new_keys]
    card[METRICS] = {"data": data, "split_set": split_set, "results": kept + list(results)}
    atomic_write_text(card_path, json.dumps(card, indent=2) + "\n")
    return card
