"""Data assembly for recipes/accent_adaptation/run.sh: the rows `asr-sft split` divides, the general
(forgetting) set, and per-group manifests after the split. Reads and writes manifests through the
library (validated both ways); chooses rows deterministically (by id order), never at random.

    python recipes/accent_adaptation/groups.py prepare --rows S.jsonl --fsdd-train F1.jsonl \
        --fsdd-test F2.jsonl --fsdd-accents DEU/German --clips C.jsonl --general-fsdd-accents USA/neutral \
        --pool pool.jsonl --general general.jsonl
    python recipes/accent_adaptation/groups.py by-group --split DIR --general general.jsonl --out DIR

Synthetic rows are trained and scored on their sentence as written (custom.sentence: case and
punctuation, as Whisper writes), not the LibriSpeech-style upper-case copy in `text`: Whisper would
otherwise spend its few adaptation steps learning to shout. FSDD accents ("DEU/German") become the
group names "fsdd-deu" (file-name safe, as benchmark test set names must be).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

from asr_sft.data.manifest import read_manifest, write_manifest
from asr_sft.data.splits import SPLITS, group_value

GROUPS_FILE = "groups.json"  # in the by-group folder: the groups, their files and sizes
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")


def fsdd_group(accent: str) -> str:
    """'DEU/German' -> 'fsdd-deu'."""
    return "fsdd-" + _UNSAFE.sub("-", accent.split("/")[0].strip().lower()).strip("-")


def per_speaker(rows: list[dict], limit: int) -> list[dict]:
    """At most `limit` rows per speaker: the first by (FSDD index, id), so every digit comes before
    any digit's second take."""
    by_speaker = defaultdict(list)
    for row in sorted(rows, key=lambda r: ((r.get("custom") or {}).get("index", 0), str(r["id"]))):
        by_speaker[row.get("speaker")].append(row)
    return [r for speaker in sorted(by_speaker, key=str) for r in by_speaker[speaker][:limit]]


def fsdd_rows(path: Path, accents: list[str], limit: int, split: str) -> list[dict]:
    rows = [r for r in read_manifest(path) if r.get("accent") in accents and r["split"] == split]
    missing = sorted(set(accents) - {r["accent"] for r in rows})
    if missing:
        raise SystemExit(f"{path}: no {split} rows with accent {', '.join(missing)}")
    chosen = per_speaker(rows, limit)
    for r in chosen:
        r["custom"] = {**(r.get("custom") or {}), "fsdd_accent": r["accent"]}
        r["accent"] = fsdd_group(r["accent"])
    return chosen


def sentence_case(rows: list[dict]) -> list[dict]:
    """Synthetic rows with their sentence as written; other rows as they are."""
    return [{**r, "text": (r.get("custom") or {}).get("sentence") or r["text"]} for r in rows]


def safe_group(value: str | None) -> str | None:
    """An accent label as a group name benchmark test sets accept: 'Scottish English' ->
    'scottish-english' ('en-gb-scotland' stays as it is)."""
    if value is None:
        return None
    name = _UNSAFE.sub("-", value.strip()).strip("-")
    return name.lower() if name != value else value


def with_safe_groups(rows: list[dict]) -> list[dict]:
    """Rows whose accent is renamed by safe_group keep the label they had in custom.accent_label."""
    out = []
    for r in rows:
        name = safe_group(r.get("accent"))
        if name != r.get("accent"):
            r = {**r, "accent": name, "custom": {**(r.get("custom") or {}), "accent_label": r["accent"]}}
        out.append(r)
    return out


def cmd_prepare(args) -> None:
    """The rows to split (synthetic accents or a corpus's rows, + FSDD's accented speakers; accents
    renamed to safe group names) and the general set (real clips + FSDD's test recordings of other
    speakers, all in group "general")."""
    pool = with_safe_groups(sentence_case([r for path in args.rows for r in read_manifest(path)]))
    if args.fsdd_accents:
        pool += fsdd_rows(args.fsdd_train, args.fsdd_accents.split(","), args.per_speaker, "train")
    write_manifest(args.pool, pool)
    print(f"{args.pool}: {len(pool)} rows in groups {', '.join(sorted({r['accent'] for r in pool}))}")
    general = [{**r, "accent": "general"} for r in read_manifest(args.clips)]
    if args.general_fsdd_accents:
        general += [{**r, "accent": "general"} for r in fsdd_rows(
            args.fsdd_test, args.general_fsdd_accents.split(","), args.general_per_speaker, "test")]
    if args.general_limit:
        general = general[: args.general_limit]
    write_manifest(args.general, general)
    print(f"{args.general}: {len(general)} rows of real speech ({sum(r['duration'] for r in general):.0f} s)")


def cmd_by_group(args) -> None:
    """<out>/<group>/{train,dev,test}.jsonl (+ train_cap-<cap>.jsonl), <out>/tests.jsonl (every
    group's test rows and the general set: one routed decode covers them), group_tests.jsonl (the
    groups' test rows only), pooled_{train,dev}.jsonl (every group) and groups.json. A group without
    dev speakers is evaluated during training on its own train rows (dev_is_train in groups.json)."""
    split_dir, out = Path(args.split), Path(args.out)
    by_split = {s: read_manifest(split_dir / f"{s}.jsonl") if (split_dir / f"{s}.jsonl").is_file() else []
                for s in SPLITS}
    caps = sorted(split_dir.glob("train_cap-*.jsonl"))
    groups = sorted({group_value(r, args.group_by) for r in by_split["train"]} - {None})
    listing = {}
    for group in groups:
        def of(rows):
            return [r for r in rows if group_value(r, args.group_by) == group]
        train, dev, test = of(by_split["train"]), of(by_split["dev"]), of(by_split["test"])
        if not test:
            print(f"note: group {group} has no test speakers; it is trained on but not scored", file=sys.stderr)
        folder = out / group
        entry = {"train": str(write_manifest(folder / "train.jsonl", train)),
                 "dev": str(write_manifest(folder / "dev.jsonl", dev or train)), "dev_is_train": not dev,
                 "test": str(write_manifest(folder / "test.jsonl", test)) if test else None,
                 "train_minutes": sum(r["duration"] for r in train) / 60,
                 "speakers": {s: len({r.get("speaker") for r in rows}) for s, rows in
                              (("train", train), ("dev", dev), ("test", test))},
                 "caps": {}}
        for cap_file in caps:
            cap = cap_file.stem.removeprefix("train_cap-")
            rows = of(read_manifest(cap_file))
            if rows:
                entry["caps"][cap] = {"manifest": str(write_manifest(folder / cap_file.name, rows)),
                                      "minutes": sum(r["duration"] for r in rows) / 60}
        listing[group] = entry
    general = read_manifest(args.general) if args.general else []
    write_manifest(out / "tests.jsonl", list(by_split["test"]) + general)
    write_manifest(out / "group_tests.jsonl", by_split["test"])
    write_manifest(out / "pooled_train.jsonl", by_split["train"])
    write_manifest(out / "pooled_dev.jsonl", by_split["dev"] or by_split["train"])
    (out / GROUPS_FILE).write_text(json.dumps({"group_by": args.group_by, "groups": listing,
                                               "general": str(Path(args.general).absolute()) if args.general else None},
                                              indent=1) + "\n", encoding="utf-8")
    for group, e in listing.items():
        print(f"{group}: train {e['speakers']['train']} speaker(s) {e['train_minutes']:.1f} min, "
              f"dev {e['speakers']['dev']}{' (= train)' if e['dev_is_train'] else ''}, test {e['speakers']['test']}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    prepare = sub.add_parser("prepare", help="the rows to split, and the general (forgetting) set")
    prepare.add_argument("--rows", type=Path, nargs="+", required=True,
                         help="manifests of the accented rows to split (asr-sft synth, or a corpus's)")
    prepare.add_argument("--fsdd-train", type=Path, help="fsdd_train.jsonl of asr-sft prepare fsdd")
    prepare.add_argument("--fsdd-test", type=Path, help="fsdd_test.jsonl of asr-sft prepare fsdd")
    prepare.add_argument("--fsdd-accents", default="", help="FSDD accent labels to add as groups, comma-separated")
    prepare.add_argument("--per-speaker", type=int, default=12, help="FSDD rows per speaker of those groups")
    prepare.add_argument("--clips", type=Path, required=True, help="manifest of the real clips")
    prepare.add_argument("--general-fsdd-accents", default="",
                         help="FSDD accents whose test recordings join the general set")
    prepare.add_argument("--general-per-speaker", type=int, default=5)
    prepare.add_argument("--general-limit", type=int, default=0, help="the general set's first N rows only (0: all)")
    prepare.add_argument("--pool", type=Path, required=True, help="manifest to write: the rows to split")
    prepare.add_argument("--general", type=Path, required=True, help="manifest to write: the general set")
    prepare.set_defaults(func=cmd_prepare)
    by_group = sub.add_parser("by-group", help="per-group manifests after asr-sft split")
    by_group.add_argument("--split", type=Path, required=True)
    by_group.add_argument("--general", type=Path)
    by_group.add_argument("--group-by", default="accent")
    by_group.add_argument("--out", type=Path, required=True)
    by_group.set_defaults(func=cmd_by_group)
    args = p.parse_args(argv)
    args.func(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
