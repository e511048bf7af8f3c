"""Free Spoken Digit Dataset (Jakobovski/free-spoken-digit-dataset): one English digit word per file.

Layout: recordings/{digit}_{speaker}_{index}.wav (8 kHz mono) and metadata.py, a Python source file
holding `metadata = {speaker: {"gender", "accent", "language"}}`. It is read with ast.literal_eval,
never imported or executed. Official split: index 0-4 test, 5-49 train.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from asr_sft.data.audio import audio_info
from asr_sft.errors import AudioError, ManifestError
from asr_sft.data.manifest import MAX_PROBLEMS_SHOWN, make_row, write_manifest

CORPUS = "fsdd"
SPLITS = ("train", "test")
TEST_INDICES = range(0, 5)  # recordings 0-4 of every digit and speaker are the official test set
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_LANGUAGES = {"english": "en"}  # metadata's words -> the codes Whisper's tokenizer uses
_FILE_NAME = re.compile(r"^(?P<digit>\d)_(?P<speaker>[A-Za-z]+)_(?P<index>\d+)\.wav$")


def read_metadata(path: str | Path) -> dict[str, dict[str, str]]:
    """The `metadata` dict of FSDD's metadata.py, parsed as a literal (never executed)."""
    path = Path(path)
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, UnicodeDecodeError, SyntaxError) as err:
        raise ManifestError(f"{path}: cannot parse speaker metadata ({err})") from err
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "metadata" for t in node.targets):
            try:
                metadata = ast.literal_eval(node.value)
            except ValueError as err:
                raise ManifestError(f"{path}:{node.lineno}: 'metadata' is not a literal dict") from err
            if not isinstance(metadata, dict) or not all(isinstance(v, dict) for v in metadata.values()):
                raise ManifestError(f"{path}:{node.lineno}: 'metadata' must map speaker -> dict")
            return metadata
    raise ManifestError(f"{path}: no 'metadata = {{...}}' assignment found")


def split_of(index: int) -> str:
    return "test" if index in TEST_INDICES else "train"


def collect_fsdd(root: str | Path, limit: int | None = None) -> list[dict]:
    """Manifest rows for the recordings under <root>/recordings, in (digit, speaker, index) order.

    limit: only the first `limit` files in that order (for quick checks)."""
    root = Path(root)
    metadata = read_metadata(root / "metadata.py")
    folder = root / "recordings"
    if not folder.is_dir():
        raise ManifestError(f"{folder}: FSDD recordings folder not found")
    files = sorted((p for p in folder.iterdir() if not p.name.startswith(".")), key=_order)[:limit]
    rows, problems = [], []
    for path in files:
        match = _FILE_NAME.match(path.name)
        if not match:
            problems.append(f"{path}: name is not {{digit}}_{{speaker}}_{{index}}.wav")
            continue
        speaker, index = match["speaker"], int(match["index"])
        if speaker not in metadata:
            problems.append(f"{path}: speaker {speaker!r} not in {root / 'metadata.py'}")
            continue
        try:
            info = audio_info(path)
        except AudioError as err:
            problems.append(str(err))
            continue
        meta = metadata[speaker]
        rows.append(make_row(
            id=path.stem, audio_filepath=str(path.absolute()), duration=info.duration,
            text=DIGIT_WORDS[int(match["digit"])], speaker=speaker, accent=meta.get("accent"),
            corpus=CORPUS, split=split_of(index), sampling_rate=info.sample_rate,
            gender=meta.get("gender"), language=_LANGUAGES.get(meta.get("language"), meta.get("language")),
            custom={"index": index},
        ))
    if problems:
        raise ManifestError(f"{folder}: {len(problems)} problem(s):\n"
                            + "\n".join(f"  {p}" for p in problems[:MAX_PROBLEMS_SHOWN])
                            + (f"\n  ... and {len(problems) - MAX_PROBLEMS_SHOWN} more"
                               if len(problems) > MAX_PROBLEMS_SHOWN else ""))
    return rows


def _first_per_speaker_digit(rows: list[dict], n: int) -> list[dict]:
    """The rows of the n lowest indices of each (speaker, digit), in their order."""
    indices: dict[tuple, list[int]] = {}
    for row in rows:
        indices.setdefault((row["speaker"], row["text"]), []).append(row["custom"]["index"])
    keep = {key: set(sorted(values)[:n]) for key, values in indices.items()}
    return [r for r in rows if r["custom"]["index"] in keep[(r["speaker"], r["text"])]]


def _order(path: Path) -> tuple:
    """Numeric order of the index (2 before 10); names that don't parse sort last."""
    match = _FILE_NAME.match(path.name)
    return (0, match["digit"], match["speaker"], int(match["index"])) if match else (1, path.name)


def prepare_fsdd(root: str | Path, out_dir: str | Path, split: str | None = None,
                 limit: int | None = None, per_speaker_digit: int | None = None) -> dict[str, Path]:
    """Write <out_dir>/fsdd_train.jsonl and fsdd_test.jsonl (or only `split`). With
    `per_speaker_digit`, each split keeps only the first N recordings (by index) of every speaker
    and digit: a smaller set with the same balance of speakers and digits."""
    if split is not None and split not in SPLITS:
        raise ManifestError(f"unknown FSDD split {split!r} (choose from {', '.join(SPLITS)})")
    rows = collect_fsdd(root, limit)
    manifests = {}
    for name in [split] if split else SPLITS:
        chosen = [r for r in rows if r["split"] == name]
        if per_speaker_digit is not None:
            chosen = _first_per_speaker_digit(chosen, per_speaker_digit)
        if not chosen:
            raise ManifestError(f"{root}: no FSDD recordings for split {name!r}")
        manifests[name] = write_manifest(Path(out_dir) / f"fsdd_{name}.jsonl", chosen)
    return manifests
