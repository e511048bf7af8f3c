"""Speaker-disjoint train/dev/test splits per group (accent by default), for adaptation experiments.

    rows of any manifests -> per group: speakers shuffled (seeded) and dealt to test, then dev,
    then train (each split a share of the group's speakers, with minimum speakers and minutes)
    -> sentences shared between train and held-out text removed (reported)
    -> nested training caps per group (train_cap-10m.jsonl within train_cap-1h.jsonl ...)
    -> <out>/train.jsonl, dev.jsonl, test.jsonl, train_cap-*.jsonl, split_summary.json

A speaker (the row's `speaker` value; equal values from two corpora count as one speaker, which can
only make the split stricter) is in one split only, across all groups; a speaker whose rows carry
several group values belongs to the group of most of their rows. A group that cannot meet a split's minimum is left out
of that split and reported; test is filled first, then dev only if train can still meet its own
minimum. Everything depends only on the rows and the seed, never on row order.

Repeated text (L2-ARCTIC, Speech Accent Archive: every speaker reads the same prompts) makes
speaker-disjoint splits share sentences. text_overlap chooses what to do about it:
  "drop-train"  a training row whose sentence is in dev or test is removed (the default; right when
                sentences rarely repeat, as in Common Voice)
  "partition"   each sentence found on both sides is given to one side (seeded, in proportion to
                the train share) and removed from the other: both sides keep data (L2-ARCTIC)
  "allow"       nothing is removed; the summary counts the shared sentences (Speech Accent
                Archive, where one paragraph is all there is)
Sentences are compared case-folded with punctuation removed.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from asr_sft.atomic import write_text_atomic
from asr_sft.data.manifest import read_manifest, write_manifest
from asr_sft.errors import ManifestError, OptionError

SPLITS = ("train", "dev", "test")
TEXT_OVERLAP = ("drop-train", "partition", "allow")
SUMMARY_FILE = "split_summary.json"
SUMMARY_FORMAT = "asr_sft.split_summary/1"
CAP_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}  # seconds per unit of a cap such as "10m"
_CAP = re.compile(r"^(?P<number>\d+(?:\.\d+)?)(?P<unit>[smh])$")
_NOT_WORD = re.compile(r"[^\w\s']+")


@dataclass(frozen=True)
class SplitOptions:
    group_by: str = "accent"  # row field, or key of the row's custom dict, whose values are the groups
    # Share of each group's speakers per split (normalised); dev may be left out or 0.
    fractions: tuple[tuple[str, float], ...] = (("train", 0.8), ("dev", 0.1), ("test", 0.1))
    min_speakers: tuple[tuple[str, int], ...] = (("train", 1), ("dev", 1), ("test", 1))  # per group
    min_minutes: tuple[tuple[str, float], ...] = (("train", 0.0), ("dev", 0.0), ("test", 0.0))  # per group
    text_overlap: str = "drop-train"  # see the module docstring
    train_caps: tuple[str, ...] = ()  # nested training subsets per group, e.g. ("10m", "1h", "10h")
    seed: int = 0

    def __post_init__(self):
        fractions = dict(self.fractions)
        if not self.group_by:
            raise OptionError("split.group_by must name a field, got ''")
        for name, table in (("fractions", self.fractions), ("min_speakers", self.min_speakers),
                            ("min_minutes", self.min_minutes)):
            unknown = sorted(set(dict(table)) - set(SPLITS))
            if unknown:
                raise OptionError(f"split.{name}: unknown split(s) {unknown} (use {', '.join(SPLITS)})")
        if fractions.get("train", 0) <= 0 or fractions.get("test", 0) <= 0:
            raise OptionError(f"split.fractions must give train and test a share > 0, got {fractions}")
        if any(v < 0 for v in fractions.values()):
            raise OptionError(f"split.fractions must be >= 0, got {fractions}")
        if any(v < 1 for v in dict(self.min_speakers).values()):
            raise OptionError(f"split.min_speakers must be >= 1, got {dict(self.min_speakers)}")
        if any(v < 0 for v in dict(self.min_minutes).values()):
            raise OptionError(f"split.min_minutes must be >= 0, got {dict(self.min_minutes)}")
        if self.text_overlap not in TEXT_OVERLAP:
            raise OptionError(f"split.text_overlap must be one of {', '.join(TEXT_OVERLAP)}, got {self.text_overlap!r}")
        for cap in self.train_caps:
            cap_seconds(cap)
        if len(set(self.train_caps)) != len(self.train_caps):
            raise OptionError(f"split.train_caps repeats a cap: {list(self.train_caps)}")

    def share(self, split: str) -> float:
        fractions = dict(self.fractions)
        return fractions.get(split, 0.0) / sum(fractions.values())


@dataclass(frozen=True)
class SplitCell:
    group: str
    split: str
    speakers: int
    utterances: int
    minutes: float


@dataclass(frozen=True)
class CapCell:
    cap: str  # as given, e.g. "10m"
    group: str
    speakers: int
    utterances: int
    minutes: float
    reached: bool  # False: the group's training split is smaller than the cap (all of it is used)


@dataclass(frozen=True)
class SplitSummary:
    options: dict  # the SplitOptions, as a dict
    inputs: tuple[str, ...]  # manifests read
    cells: tuple[SplitCell, ...]  # group x split (every group, every split, zeros included)
    caps: tuple[CapCell, ...]  # cap x group
    left_out: tuple[str, ...]  # what was left out of a split, and why
    text_removed: dict[str, int]  # split -> utterances removed because their sentence is on the other side
    shared_sentences: int  # distinct sentences in train and in dev/test after the text step
    manifests: dict[str, str] = field(default_factory=dict)  # split or "train_cap-<cap>" -> path
    format: str = SUMMARY_FORMAT

    def to_dict(self) -> dict:
        return asdict(self)

    def format_table(self) -> str:
        """The group x split table (speakers, utterances, minutes), then the caps."""
        lines = [f"{'group':<24} {'split':<6} {'speakers':>8} {'utterances':>10} {'minutes':>9}"]
        for c in self.cells:
            lines.append(f"{c.group[:24]:<24} {c.split:<6} {c.speakers:>8} {c.utterances:>10} {c.minutes:>9.2f}")
        for split in SPLITS:
            cells = [c for c in self.cells if c.split == split]
            lines.append(f"{'total':<24} {split:<6} {sum(c.speakers for c in cells):>8} "
                         f"{sum(c.utterances for c in cells):>10} {sum(c.minutes for c in cells):>9.2f}")
        if self.caps:
            lines.append(f"\n{'cap':<8} {'group':<24} {'speakers':>8} {'utterances':>10} {'minutes':>9}")
            for c in self.caps:
                note = "" if c.reached else "  (all of train: below the cap)"
                lines.append(f"{c.cap:<8} {c.group[:24]:<24} {c.speakers:>8} {c.utterances:>10} "
                             f"{c.minutes:>9.2f}{note}")
        return "\n".join(lines)


@dataclass(frozen=True)
class Splits:
    rows: dict[str, tuple[dict, ...]]  # split -> rows (their "split" field set), input order
    caps: dict[str, tuple[dict, ...]]  # cap -> training rows within it
    summary: SplitSummary


def cap_seconds(cap: str) -> float:
    """'10m' -> 600.0; units s, m, h."""
    match = _CAP.match(cap.strip())
    if not match or float(match["number"]) <= 0:
        raise OptionError(f"split.train_caps: want a positive number and a unit (s, m, h) such as 10m, got {cap!r}")
    return float(match["number"]) * CAP_UNITS[match["unit"]]


def text_key(text: str) -> str:
    """The form in which two transcripts count as the same sentence."""
    return " ".join(_NOT_WORD.sub(" ", text.casefold()).split())


def group_value(row: dict, name: str) -> str | None:
    value = row[name] if row.get(name) is not None else (row.get("custom") or {}).get(name)
    return None if value is None or str(value).strip() == "" else str(value)


# --- the split ---------------------------------------------------------------------------------
def split_rows(rows: Iterable[dict], options: SplitOptions = SplitOptions(),
               inputs: Sequence[str] = ()) -> Splits:
    """Assign every usable row to train, dev or test (see the module docstring)."""
    rows = list(rows)
    left_out: list[str] = []
    usable = _usable_rows(rows, options.group_by, left_out)
    group_of = _speaker_groups(usable, options.group_by, left_out)
    minutes = Counter()
    for row in usable:
        minutes[row["speaker"]] += row["duration"] / 60
    by_group = defaultdict(list)
    for speaker, group in group_of.items():
        by_group[group].append(speaker)
    split_of = {}
    for group in sorted(by_group):
        split_of.update(_assign_group(group, by_group[group], minutes, options, left_out))
    assigned = defaultdict(list)
    for row in usable:
        if row["speaker"] in split_of:
            assigned[split_of[row["speaker"]]].append(row)
    before = {s: {group_of[r["speaker"]] for r in assigned[s]} for s in SPLITS}
    removed = _remove_shared_text(assigned, options)
    left_out += [f"{n} {split} utterance(s) removed: their sentence is also on the other side of the "
                 f"train/held-out line (text_overlap={options.text_overlap})" for split, n in removed.items() if n]
    _enforce_minima(assigned, before, group_of, options, left_out)
    shared = _shared_sentences(assigned)
    result = {s: tuple({**r, "split": s} for r in assigned[s]) for s in SPLITS if assigned[s]}
    caps, cap_cells = _caps(result.get("train", ()), group_of, options)
    summary = SplitSummary(
        options=asdict(options), inputs=tuple(map(str, inputs)),
        cells=_cells(result, group_of, sorted(by_group)), caps=cap_cells, left_out=tuple(left_out),
        text_removed=removed, shared_sentences=shared,
    )
    return Splits(rows=result, caps=caps, summary=summary)


def _usable_rows(rows: list[dict], group_by: str, left_out: list[str]) -> list[dict]:
    no_speaker = [r for r in rows if not r.get("speaker")]
    no_group = [r for r in rows if r.get("speaker") and group_value(r, group_by) is None]
    if no_speaker:
        left_out.append(f"{len(no_speaker)} utterance(s) without a speaker (speaker-disjoint splits need one), "
                        f"e.g. {no_speaker[0]['id']}")
    if no_group:
        left_out.append(f"{len(no_group)} utterance(s) without a {group_by!r} value, e.g. {no_group[0]['id']}")
    return [r for r in rows if r.get("speaker") and group_value(r, group_by) is not None]


def _speaker_groups(rows: list[dict], group_by: str, left_out: list[str]) -> dict[str, str]:
    """speaker -> the group of most of their rows (ties: the first name in sorted order)."""
    counts = defaultdict(Counter)
    for row in rows:
        counts[row["speaker"]][group_value(row, group_by)] += 1
    group_of = {}
    for speaker in sorted(counts, key=str):
        group_of[speaker] = min(counts[speaker], key=lambda g: (-counts[speaker][g], g))
        if len(counts[speaker]) > 1:
            left_out.append(f"speaker {speaker} has rows in groups {sorted(counts[speaker])}: all of them "
                            f"go with group {group_of[speaker]!r}")
    return group_of


def _assign_group(group: str, speakers: list[str], minutes: Counter, options: SplitOptions,
                  left_out: list[str]) -> dict[str, str]:
    rng = random.Random(f"asr_sft.splits {options.seed} {group}")
    pool = sorted(speakers, key=str)
    rng.shuffle(pool)
    min_spk, min_min = dict(options.min_speakers), dict(options.min_minutes)
    # held-out splits aim at their share of the speakers; train takes the rest, if it meets its minimum
    needs = {s: (max(min_spk.get(s, 1), round(options.share(s) * len(pool))), min_min.get(s, 0.0))
             for s in ("dev", "test")}
    needs["train"] = (min_spk.get("train", 1), min_min.get("train", 0.0))
    split_of = {}
    for split in ("test", "dev"):
        if options.share(split) == 0:
            continue
        chosen = _take(pool, minutes, *needs[split])
        rest = [s for s in pool if s not in (chosen or ())]
        if chosen is not None and split == "dev" and not _meets(rest, minutes, *needs["train"]):
            left_out.append(f"group {group!r}: left out of dev (taking its dev speakers would leave train "
                            f"below {_describe(*needs['train'])})")
            continue
        if chosen is None:
            left_out.append(f"group {group!r}: left out of {split} (needs {_describe(*needs[split])}; "
                            f"{_describe(len(pool), sum(minutes[s] for s in pool))} left)")
            continue
        split_of.update({s: split for s in chosen})
        pool = rest
    if _meets(pool, minutes, *needs["train"]):
        split_of.update({s: "train" for s in pool})
    else:
        left_out.append(f"group {group!r}: left out of train (needs {_describe(*needs['train'])}; "
                        f"{_describe(len(pool), sum(minutes[s] for s in pool))} left)")
    if not split_of:
        left_out.append(f"group {group!r}: in no split at all ({len(speakers)} speaker(s))")
    return split_of


def _take(pool: list[str], minutes: Counter, speakers: int, min_minutes: float) -> list[str] | None:
    """The first speakers of `pool` that make `speakers` speakers and `min_minutes`, or None."""
    chosen, total = [], 0.0
    for speaker in pool:
        if len(chosen) >= speakers and total >= min_minutes:
            break
        chosen.append(speaker)
        total += minutes[speaker]
    return chosen if _meets(chosen, minutes, speakers, min_minutes) else None


def _meets(speakers: list[str], minutes: Counter, need_speakers: int, need_minutes: float) -> bool:
    return len(speakers) >= need_speakers and sum(minutes[s] for s in speakers) >= need_minutes - 1e-9


def _describe(speakers: int, minutes: float) -> str:
    return f"{speakers} speaker(s)" + (f" and {minutes:.2f} min" if minutes else "")


def _remove_shared_text(assigned: dict[str, list[dict]], options: SplitOptions) -> dict[str, int]:
    """Apply options.text_overlap in place; utterances removed per split."""
    removed = {s: 0 for s in SPLITS}
    if options.text_overlap == "allow":
        return removed
    held_keys = {text_key(r["text"]) for s in ("dev", "test") for r in assigned[s]}
    train_keys = {text_key(r["text"]) for r in assigned["train"]}
    shared = held_keys & train_keys
    if options.text_overlap == "drop-train":
        lose = {"train": shared}
    else:  # partition: each shared sentence goes to one side
        to_train = {k for k in shared if _unit(options.seed, k) < options.share("train")}
        lose = {"train": shared - to_train, "dev": to_train, "test": to_train}
    for split, keys in lose.items():
        kept = [r for r in assigned[split] if text_key(r["text"]) not in keys]
        removed[split] = len(assigned[split]) - len(kept)
        assigned[split] = kept
    return removed


def _unit(seed: int, key: str) -> float:
    """A number in [0, 1) fixed by the seed and the sentence."""
    digest = hashlib.sha256(f"asr_sft.splits text {seed} {key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _shared_sentences(assigned: dict[str, list[dict]]) -> int:
    held = {text_key(r["text"]) for s in ("dev", "test") for r in assigned[s]}
    return len(held & {text_key(r["text"]) for r in assigned["train"]})


def _enforce_minima(assigned: dict[str, list[dict]], before: dict[str, set[str]], group_of: dict[str, str],
                    options: SplitOptions, left_out: list[str]) -> None:
    """After the text step a group may fall below a split's minimum (`before`: the groups each split
    held before it): it then leaves that split."""
    min_spk, min_min = dict(options.min_speakers), dict(options.min_minutes)
    for split in SPLITS:
        by_group = defaultdict(list)
        for row in assigned[split]:
            by_group[group_of[row["speaker"]]].append(row)
        drop = set()
        for group in sorted(before[split]):
            rows = by_group.get(group, [])
            speakers, minutes = len({r["speaker"] for r in rows}), sum(r["duration"] for r in rows) / 60
            need = (min_spk.get(split, 1), min_min.get(split, 0.0))
            if speakers < need[0] or minutes < need[1] - 1e-9:
                drop.add(group)
                left_out.append(f"group {group!r}: left out of {split} after removing shared sentences "
                                f"({_describe(speakers, minutes)} left, needs {_describe(*need)})")
        assigned[split] = [r for r in assigned[split] if group_of[r["speaker"]] not in drop]


def _caps(train: tuple[dict, ...], group_of: dict[str, str],
          options: SplitOptions) -> tuple[dict[str, tuple[dict, ...]], tuple[CapCell, ...]]:
    """Per group, one seeded order of its training rows; a cap takes the longest prefix of that
    order within its budget, so a smaller cap's rows are always among a larger cap's."""
    caps = sorted(options.train_caps, key=cap_seconds)
    by_group = defaultdict(list)
    for row in train:
        by_group[group_of[row["speaker"]]].append(row)
    chosen = {cap: set() for cap in caps}
    cells = []
    for group in sorted(by_group):
        order = sorted(by_group[group], key=lambda r: r["id"])
        random.Random(f"asr_sft.splits caps {options.seed} {group}").shuffle(order)
        for cap in caps:
            budget, total, taken = cap_seconds(cap), 0.0, []
            for row in order:
                if total + row["duration"] > budget + 1e-9:
                    break
                taken.append(row)
                total += row["duration"]
            chosen[cap].update(r["id"] for r in taken)
            cells.append(CapCell(cap, group, len({r["speaker"] for r in taken}), len(taken),
                                 round(total / 60, 3), reached=len(taken) < len(order)))
    return {cap: tuple(r for r in train if r["id"] in chosen[cap]) for cap in caps}, tuple(cells)


def _cells(result: dict[str, tuple[dict, ...]], group_of: dict[str, str], groups: list[str]) -> tuple[SplitCell, ...]:
    cells = []
    for group in groups:
        for split in SPLITS:
            rows = [r for r in result.get(split, ()) if group_of[r["speaker"]] == group]
            cells.append(SplitCell(group, split, len({r["speaker"] for r in rows}), len(rows),
                                   round(sum(r["duration"] for r in rows) / 60, 3)))
    return tuple(cells)


# --- files ---------------------------------------------------------------------------------------
def write_splits(manifests: Sequence[str | Path], out_dir: str | Path, options: SplitOptions = SplitOptions(),
                 check_audio: bool = True) -> SplitSummary:
    """Read `manifests` (ids unique across them), split, and write <out_dir>/train.jsonl, dev.jsonl,
    test.jsonl, train_cap-<cap>.jsonl and split_summary.json. Files a previous run listed in its
    summary and this run does not write are removed, so the folder describes one split."""
    rows, seen = [], {}
    for path in manifests:
        for row in read_manifest(path, check_audio=check_audio):
            if row["id"] in seen:
                raise ManifestError(f"{path}: id {row['id']!r} also in {seen[row['id']]}; "
                                    "ids must be unique across inputs")
            seen[row["id"]] = path
            rows.append(row)
    if not rows:
        raise ManifestError(f"no rows in {', '.join(map(str, manifests))}")
    splits = split_rows(rows, options, inputs=[str(Path(p).absolute()) for p in manifests])
    if not splits.rows:
        raise ManifestError("no group could fill any split:\n" + "\n".join(f"  {s}" for s in splits.summary.left_out))
    out = Path(out_dir)
    previous = _previous_manifests(out / SUMMARY_FILE)
    (out / SUMMARY_FILE).unlink(missing_ok=True)
    written = {}
    for split, split_rows_ in splits.rows.items():
        written[split] = str(write_manifest(out / f"{split}.jsonl", split_rows_, check_audio=check_audio))
    for cap, cap_rows in splits.caps.items():
        if cap_rows:
            written[f"train_cap-{cap}"] = str(write_manifest(out / f"train_cap-{cap}.jsonl", cap_rows,
                                                             check_audio=check_audio))
    for stale in previous - set(written.values()):
        Path(stale).unlink(missing_ok=True)
    summary = replace(splits.summary, manifests=written)
    write_text_atomic(out / SUMMARY_FILE, json.dumps(summary.to_dict(), indent=1) + "\n")
    return summary


def _previous_manifests(path: Path) -> set[str]:
    try:
        return set(json.loads(path.read_text(encoding="utf-8")).get("manifests", {}).values())
    except (OSError, ValueError, AttributeError):
        return set()
