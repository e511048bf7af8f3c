"""Hypothesis files, whichever tool wrote them: our hyps.jsonl (`{"id", "hyp", "ref"?, ...}` per
line, from asr-sft decode), Kaldi `text` ("uttid words...") or sclite trn ("words (spk-uttid)").
Readers return text per utterance id and stop at the first malformed line or repeated id, naming the
file and line; `assign_hypotheses` matches a file's ids to the utterances of one or more test sets.
`read_references` reads reference transcripts from a trn or Kaldi text file (`asr-sft score --refs`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from asr_sft.errors import ScoringError

HYP_FORMATS = ("jsonl", "kaldi", "trn")
_TRN_LINE = re.compile(r"^(.*?)\s*\(([^()\s]+)\)\s*$")


def trn_id(utterance_id: str, speaker: str | None) -> str:
    """sclite's trn id `speaker-utterance`: sclite takes the speaker to be the text before the first
    '-', so '-' in the speaker becomes '_'; ids that already start with "speaker-" are kept."""
    def clean(text: str) -> str:
        return "".join("_" if c.isspace() or c in "()" else c for c in text)
    spk = clean(str(speaker)).replace("-", "_") if speaker not in (None, "") else "unknown"
    utt = clean(str(utterance_id))
    return utt if utt.startswith(f"{spk}-") else f"{spk}-{utt}"


def detect_format(path: str | Path) -> str:
    """"jsonl", "kaldi" or "trn": by extension (.jsonl, .trn), else by the first non-blank line."""
    path = Path(path)
    if path.suffix in (".jsonl", ".json"):
        return "jsonl"
    if path.suffix == ".trn":
        return "trn"
    for line in _read_lines(path):
        if line.strip():
            if line.lstrip().startswith("{"):
                return "jsonl"
            return "trn" if _TRN_LINE.match(line) else "kaldi"
    return "kaldi"


def read_hypotheses(path: str | Path, fmt: str | None = None) -> dict[str, str]:
    """Hypothesis text per utterance id, in file order; a malformed line or a repeated id is an
    error naming the file and line. trn ids are returned as written (often "speaker-utterance")."""
    path = Path(path)
    fmt = fmt or detect_format(path)
    if fmt not in HYP_FORMATS:
        raise ScoringError(f"{path}: unknown hypothesis format {fmt!r}; known: {', '.join(HYP_FORMATS)}")
    hyps: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for number, line in enumerate(_read_lines(path), start=1):
        if not line.strip():
            continue
        key, text = _parse_line(path, number, line, fmt)
        if key in hyps:
            raise ScoringError(f"{path}: line {number}: id {key!r} already on line {first_line[key]}")
        hyps[key], first_line[key] = text, number
    return hyps


def _parse_line(path: Path, number: int, line: str, fmt: str) -> tuple[str, str]:
    where = f"{path}: line {number}"
    if fmt == "kaldi":
        key, *words = line.split()  # space or tab after the id
        return key, " ".join(words)
    if fmt == "trn":
        match = _TRN_LINE.match(line)
        if not match:
            raise ScoringError(f"{where}: not a trn line ('words (speaker-utterance)'): {line[:80]!r}")
        return match.group(2), " ".join(match.group(1).split())
    row = _json_object(where, line)
    if not isinstance(row.get("hyp"), str) or row.get("id") in (None, ""):
        raise ScoringError(f"{where}: needs an \"id\" and a string \"hyp\" (have: {', '.join(row)})")
    return str(row["id"]), row["hyp"]


def read_hyp_rows(path: str | Path) -> list[dict]:
    """Rows of our hyps.jsonl as manifest-like rows: `text` is the reference ("ref"), and the other
    fields (speaker, accent, duration...) are kept for groups. Needs a "ref" on every line."""
    path = Path(path)
    rows = []
    for number, line in enumerate(_read_lines(path), start=1):
        if not line.strip():
            continue
        row = _json_object(f"{path}: line {number}", line)
        if not isinstance(row.get("ref"), str):
            raise ScoringError(f"{path}: line {number}: no \"ref\" text; give the manifest (--manifest) "
                               "to take references from")
        rows.append({**{k: v for k, v in row.items() if k not in ("ref", "hyp")}, "text": row["ref"]})
    return rows


def read_references(path: str | Path) -> list[dict]:
    """Reference transcripts from an sclite trn ("words (speaker-utterance)") or Kaldi text
    ("uttid words...") file, as manifest-like rows {"id", "text", "speaker"}: what `asr-sft score
    --refs` scores against, with no audio. The id is kept whole; a trn id's speaker is the text
    before its first '-', as sclite reads it (none without a '-'; Kaldi text has no speakers)."""
    path = Path(path)
    fmt = detect_format(path)
    if fmt == "jsonl":
        raise ScoringError(f"{path}: references come from a manifest (--manifest) or a trn / Kaldi text "
                           "file, not a JSONL file of hypotheses")
    rows = []
    for key, text in read_hypotheses(path, fmt).items():
        speaker, dash, _ = key.partition("-")
        rows.append({"id": key, "text": text, "speaker": speaker if fmt == "trn" and dash and speaker else None})
    return rows


def _json_object(where: str, line: str) -> dict:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as err:
        raise ScoringError(f"{where}: not valid JSON ({err.msg})") from None
    if not isinstance(row, dict):
        raise ScoringError(f"{where}: not a JSON object")
    return row


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise ScoringError(f"{path}: cannot read hypotheses ({err.strerror})") from None
    except UnicodeDecodeError as err:
        raise ScoringError(f"{path}: bad UTF-8 at byte {err.start}") from None


def assign_hypotheses(path: str | Path, hyps: Mapping[str, str],
                      testsets: Mapping[str, Sequence[Mapping]]) -> dict[str, dict[str, str]]:
    """Split one file's hypotheses among test sets by utterance id: {test set: {id: text}}.

    A trn id may also be `trn_id(id, speaker)` ("speaker-utterance"). Every utterance of every
    test set needs a hypothesis and every hypothesis must belong to one; otherwise ScoringError
    naming the file and (some of) the ids."""
    owner: dict[str, tuple[str, str]] = {}  # id as in a file -> (test set, row id)
    for name, rows in testsets.items():
        for row in rows:
            owner.setdefault(trn_id(row["id"], row.get("speaker")), (name, str(row["id"])))
    for name, rows in testsets.items():  # exact ids win over "speaker-utterance" aliases
        owner.update({str(row["id"]): (name, str(row["id"])) for row in rows})
    out: dict[str, dict[str, str]] = {name: {} for name in testsets}
    extra = []
    for key, text in hyps.items():
        if key not in owner:
            extra.append(key)
            continue
        name, row_id = owner[key]
        if row_id in out[name]:
            raise ScoringError(f"{path}: two hypotheses for utterance {row_id!r} of test set {name!r}")
        out[name][row_id] = text
    where = f"test set(s) {', '.join(map(repr, testsets))}"
    if extra:
        raise ScoringError(f"{path}: {len(extra)} hypothesis id(s) match no utterance of {where}: "
                           + _some(extra))
    for name, rows in testsets.items():
        missing = [str(r["id"]) for r in rows if str(r["id"]) not in out[name]]
        if missing:
            raise ScoringError(f"{path}: no hypothesis for {len(missing)} utterance(s) of test set "
                               f"{name!r}: {_some(missing)}")
    return out


def _some(items: Sequence[str], shown: int = 10) -> str:
    return ", ".join(items[:shown]) + (f" ... ({len(items) - shown} more)" if len(items) > shown else "")
