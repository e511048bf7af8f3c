"""Adapter routing at decode time: each utterance decoded with its group's LoRA adapter.

    decode_routed(manifest, out_dir, RoutingOptions(adapters=(("scottish", dir1), ("029", dir2)),
                  route_by="accent", fallback=pooled_dir)) -> out_dir/hyps.jsonl + decode.json

Each row goes to the adapter named by its `route_by` value (a row field, or a key of its custom
dict, as `asr-sft split` groups them; `group` sends every row to one adapter instead). A row whose
group has no adapter goes to `fallback` (a pooled adapter, or any model folder) or, without one, to
the adapters' base model, which all adapters must then share. A group may also name a whole model
(a full fine-tune per group), which then needs a fallback. hyps.jsonl is decode.py's, one line per
manifest row in manifest order, plus "route" (the adapter's group name, "fallback" or "base") and
"route_model" (what decoded it); decode.json adds the routes: model, utterances and timing of each.

Every route's model is loaded through decode.load_model, as `asr-sft decode --model <adapter>`
loads it (base + adapter, the adapter's own processor, its variable-length setting), decodes its
rows, and is freed before the next: a group's hypotheses are exactly what decoding that adapter on
those rows alone gives. This reloads the base once per route (about a second for Whisper tiny,
a few for base) instead of stacking adapters onto one peft model; stacking would need every
adapter to share one processor and one encoder setting, which adapters with their own CTC
vocabulary or window setting do not.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from asr_sft.atomic import write_text_atomic
from asr_sft.data.manifest import read_manifest
from asr_sft.data.splits import group_value
from asr_sft.errors import ManifestError, ModelError, OptionError
from asr_sft.evaluation import decode
from asr_sft.evaluation.results import DecodeCounts
from asr_sft.models import lora
from asr_sft.models.options import DecodeOptions, Transcript
from asr_sft.models.resolve import follow_pointer

log = logging.getLogger(__name__)

FALLBACK, BASE = "fallback", "base"  # route names besides the groups' own
UNKNOWN = "unknown"  # how decode.json names rows without a route_by value
ROUTING_FORMAT = "asr_sft.routing/v1"  # the "routing" part of decode.json


@dataclass(frozen=True)
class RoutingOptions:
    # (group value, model): a LoRA adapter folder (or a run's checkpoints/best pointer to one); a
    # whole model folder works too (its group's rows are decoded with it).
    adapters: tuple[tuple[str, str], ...]
    route_by: str = "accent"  # row field (or custom key) whose value picks the adapter
    # Model for rows whose group has no adapter (a pooled adapter, or any model); None: the base.
    fallback: str | None = None
    group: str | None = None  # route every row as this group, whatever its route_by value

    def __post_init__(self):
        object.__setattr__(self, "adapters", tuple((str(g), str(p)) for g, p in self.adapters))
        groups = [g for g, _ in self.adapters]
        if not groups:
            raise OptionError("routing needs at least one adapter (--adapters GROUP=DIR,...)")
        if len(set(groups)) < len(groups):
            raise OptionError(f"routing: a group is given two adapters: {groups}")
        if {FALLBACK, BASE} & set(groups):
            raise OptionError(f"routing: {FALLBACK!r} and {BASE!r} are route names, not groups")
        if not self.route_by:
            raise OptionError("routing: route_by must name a row field")
        if self.group is not None and self.group not in groups:
            raise OptionError(f"routing: group {self.group!r} has no adapter (adapters: {', '.join(groups)})")

    def route(self, row: dict) -> str:
        """The route of one manifest row: its group if that has an adapter, else FALLBACK or BASE."""
        value = self.group if self.group is not None else group_value(row, self.route_by)
        if value in dict(self.adapters):
            return value
        return FALLBACK if self.fallback is not None else BASE


def check_adapters(options: RoutingOptions, need_base: bool = True) -> dict[str, str]:
    """{route: model} for every route: the groups' models (a LoRA adapter folder is checked to be one,
    with a readable base; a whole model folder is taken as it is), the fallback, or the base the
    adapters share (when `need_base`: some row has no adapter). Adapters on different bases, or
    whole models, then need a fallback."""
    models, bases = {}, {}
    for group, path in options.adapters:
        folder = follow_pointer(path) or Path(path)
        if not folder.is_dir():
            raise ModelError(f"model for {options.route_by}={group}: {path} is not a folder")
        models[group] = str(path)
        bases[group] = lora.adapter_base(folder) if lora.is_adapter_dir(folder) else None
    if options.fallback is not None:
        models[FALLBACK] = options.fallback
        return models
    if not need_base:
        return models
    whole = [g for g, b in bases.items() if b is None]
    if whole:
        raise ModelError(f"{', '.join(whole)}: a whole model, no base to decode the other groups with; give a "
                         "fallback model")
    distinct = sorted(set(bases.values()))
    if len(distinct) > 1:
        raise ModelError("the adapters have different base models (" + "; ".join(
            f"{g}: {b}" for g, b in bases.items()) + "); give a fallback model for the other groups")
    models[BASE] = distinct[0]
    return models


def plan_routes(rows: Sequence[dict], options: RoutingOptions) -> list[str]:
    """The route of each row, in row order."""
    return [options.route(r) for r in rows]


@dataclass(frozen=True)
class RouteRun:
    """What one route decoded (decode.json's "routes" entries)."""

    route: str  # the group, FALLBACK or BASE
    model: str  # what decoded its rows
    utterances: int
    audio_seconds: float
    load_seconds: float  # reading audio
    decode_seconds: float  # waveforms to text
    errors: tuple[dict, ...]  # {"id", "error"} of rows that could not be decoded (hypothesis "")
    guard: DecodeCounts  # what Whisper's decoding guard caught

    def to_dict(self) -> dict:
        rtfx = self.audio_seconds / self.decode_seconds if self.decode_seconds > 0 else None
        return {**{k: v for k, v in asdict(self).items() if k not in ("errors", "guard")}, "rtfx": rtfx,
                "errors": list(self.errors), "guard": self.guard.to_dict()}


def decode_rows_routed(rows: Sequence[dict], options: RoutingOptions, decode_options: DecodeOptions = DecodeOptions()
                       ) -> tuple[list[Transcript], list[str], list[RouteRun]]:
    """(transcripts in row order, routes in row order, one RouteRun per route) for manifest rows,
    each route's rows decoded by that route's model (loaded, used and freed, one at a time)."""
    if not rows:
        raise ManifestError("no utterances to decode")
    routes = plan_routes(rows, options)
    models = check_adapters(options, need_base=BASE in routes)
    transcripts: list[Transcript | None] = [None] * len(rows)
    runs = []
    for route in dict.fromkeys(routes):  # in order of first appearance
        members = [i for i, r in enumerate(routes) if r == route]
        picked = [rows[i] for i in members]
        log.info("route %s: %d utterance(s) with %s", route, len(picked), models[route])
        model, processor = decode.load_model(models[route], decode_options)
        if (warning := decode.too_long_warning(model, picked)) is not None:
            log.warning("route %s: %s", route, warning)
        run = decode.decode_rows_report(model, processor, picked, decode_options)
        on_gpu = next(model.parameters()).is_cuda
        del model
        if on_gpu:
            torch.cuda.empty_cache()
        for i, transcript in zip(members, run.transcripts, strict=True):
            transcripts[i] = transcript
        t = run.timing
        runs.append(RouteRun(route, models[route], t.utterances, t.audio_seconds, t.load_seconds, t.decode_seconds,
                             t.errors, decode.guard_counts(picked, run)))
    return transcripts, routes, runs


def decode_routed(manifest: str | Path, out_dir: str | Path, options: RoutingOptions,
                  decode_options: DecodeOptions = DecodeOptions()) -> Path:
    """Decode every row of `manifest` with its route's model; write out_dir/hyps.jsonl (manifest
    order, with "route" and "route_model" per row) and out_dir/decode.json. Returns hyps.jsonl."""
    rows = read_manifest(manifest)
    if not rows:
        raise ManifestError(f"{manifest}: no utterances to decode")
    transcripts, routes, runs = decode_rows_routed(rows, options, decode_options)
    models = {r.route: r.model for r in runs}
    lines = [json.dumps({**row, "route": route, "route_model": models[route]}, ensure_ascii=False) + "\n"
             for row, route in zip(decode.hyp_rows(rows, [t.text for t in transcripts]), routes, strict=True)]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / decode.HYPS_NAME, "".join(lines))
    unrouted = sorted({group_value(r, options.route_by) or UNKNOWN for r, route in zip(rows, routes)
                       if route in (FALLBACK, BASE)})
    summary = {
        "format": ROUTING_FORMAT, "manifest": str(Path(manifest).absolute()), "options": asdict(decode_options),
        "routing": {"route_by": options.route_by, "group": options.group, "adapters": dict(options.adapters),
                    "fallback": options.fallback, "groups_without_adapter": unrouted},
        "utterances": len(rows), "audio_seconds": sum(r.audio_seconds for r in runs),
        "decode_seconds": sum(r.decode_seconds for r in runs),
        "errors": [e for r in runs for e in r.errors], "routes": {r.route: r.to_dict() for r in runs},
    }
    write_text_atomic(out_dir / decode.SUMMARY_NAME, json.dumps(summary, indent=2) + "\n")
    log.info("decoded %d utterances over %d route(s): %s", len(rows), len(runs),
             ", ".join(f"{r.route} {r.utterances}" for r in runs))
    return out_dir / decode.HYPS_NAME
