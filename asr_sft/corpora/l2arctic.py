"""L2-ARCTIC (Zhao et al., Interspeech 2018): 24 non-native speakers of English, six first languages,
each reading the CMU ARCTIC prompts (~1,130 sentences, the same for everyone).

Layout of the unzipped release (l2arctic_release_v5.0/, one folder per speaker):

    <SPEAKER>/wav/arctic_a0001.wav          44.1 kHz mono 16-bit
    <SPEAKER>/transcript/arctic_a0001.txt   the prompt, one line
    <SPEAKER>/annotation/, textgrid/        alignments (not used here)
    suitcase_corpus/                        spontaneous speech, another layout (not imported)

Rows: id = <SPEAKER>_<prompt>, accent = the speaker's first language (also custom["l1"]), gender
from the release's speaker table. There is no official split: rows get split None; use
`asr-sft split` (speaker-disjoint; every speaker reads the same prompts, so sentences repeat across
speakers: see asr_sft.data.splits text_overlap="partition").
"""

from __future__ import annotations

from pathlib import Path

from asr_sft.corpora.prepared import AudioProbe, PreparedCorpus, clean_text, usable, write_prepared
from asr_sft.data.manifest import make_row
from asr_sft.errors import ManifestError

CORPUS = "l2arctic"
# speaker -> (first language, gender), from the release README (12 female, 12 male).
SPEAKERS: dict[str, tuple[str, str]] = {
    "ABA": ("Arabic", "male"), "SKA": ("Arabic", "female"),
    "YBAA": ("Arabic", "male"), "ZHAA": ("Arabic", "female"),
    "BWC": ("Mandarin", "male"), "LXC": ("Mandarin", "female"),
    "NCC": ("Mandarin", "female"), "TXHC": ("Mandarin", "male"),
    "ASI": ("Hindi", "male"), "RRBI": ("Hindi", "male"),
    "SVBI": ("Hindi", "female"), "TNI": ("Hindi", "female"),
    "HJK": ("Korean", "female"), "HKK": ("Korean", "male"),
    "YDCK": ("Korean", "female"), "YKWK": ("Korean", "male"),
    "EBVS": ("Spanish", "male"), "ERMS": ("Spanish", "male"),
    "MBMPS": ("Spanish", "female"), "NJS": ("Spanish", "female"),
    "HQTV": ("Vietnamese", "male"), "PNV": ("Vietnamese", "female"),
    "THV": ("Vietnamese", "female"), "TLV": ("Vietnamese", "male"),
}
IGNORED_FOLDERS = ("suitcase_corpus",)


def prepare_l2arctic(root: str | Path, out_dir: str | Path,
                     speakers: tuple[str, ...] | None = None) -> PreparedCorpus:
    """Write <out_dir>/l2arctic.jsonl from the speaker folders under `root` (all, or `speakers`).

    A wav without a transcript, a transcript without a wav, an empty or unreadable transcript and
    unreadable audio are skipped and reported; a speaker folder not in SPEAKERS is imported with
    accent None and a note."""
    root = Path(root)
    folders = sorted(p for p in root.iterdir() if p.is_dir() and (p / "wav").is_dir()) if root.is_dir() else []
    if not folders:
        raise ManifestError(f"{root}: no <SPEAKER>/wav/ folders; give the unzipped L2-ARCTIC release")
    notes = [f"{root / name}: not imported (not an ARCTIC speaker folder)"
             for name in IGNORED_FOLDERS if (root / name).is_dir()]
    if speakers is not None:
        unknown = sorted(set(speakers) - {p.name for p in folders})
        if unknown:
            raise ManifestError(f"{root}: speaker folder(s) {unknown} not found")
        folders = [p for p in folders if p.name in speakers]
    probe, rows, skipped = AudioProbe(), [], []
    for folder in folders:
        if folder.name in IGNORED_FOLDERS:
            continue
        if folder.name not in SPEAKERS:
            notes.append(f"{folder}: speaker not in the L2-ARCTIC table; imported with accent None")
        rows += _speaker_rows(folder, probe, skipped, Path(out_dir).absolute())
    return write_prepared(CORPUS, {None: rows}, out_dir, skipped, notes)


def _speaker_rows(folder: Path, probe: AudioProbe, skipped: list[str], base_dir: Path) -> list[dict]:
    speaker = folder.name
    l1, gender = SPEAKERS.get(speaker, (None, None))
    wavs = {p.stem: p for p in (folder / "wav").glob("*.wav")}
    texts = {p.stem: p for p in (folder / "transcript").glob("*.txt")} if (folder / "transcript").is_dir() else {}
    skipped += [f"{texts[s]}: no audio {folder / 'wav' / (s + '.wav')}" for s in sorted(set(texts) - set(wavs))]
    rows = []
    for stem in sorted(wavs):
        if stem not in texts:
            skipped.append(f"{wavs[stem]}: no transcript {folder / 'transcript' / (stem + '.txt')}")
            continue
        try:
            text = clean_text(texts[stem].read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as err:
            skipped.append(f"{texts[stem]}: cannot read transcript ({err})")
            continue
        if not text:
            skipped.append(f"{texts[stem]}: empty transcript")
            continue
        info = probe(wavs[stem])
        if isinstance(info, str):
            skipped.append(info)
            continue
        row = make_row(
            id=f"{speaker}_{stem}", audio_filepath=str(wavs[stem].absolute()), duration=info.duration,
            text=text, speaker=speaker, accent=l1, corpus=CORPUS, split=None,
            sampling_rate=info.sample_rate, language="en", gender=gender,
            custom={"prompt": stem, **({"l1": l1} if l1 else {})},
        )
        problem = usable(row, base_dir)
        if problem:
            skipped.append(f"{wavs[stem]}: {problem}")
        else:
            rows.append(row)
    return rows
