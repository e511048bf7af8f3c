"""Report files from scores: icefall's recogs/errs/wer-summary, sclite trn, and benchmark reports.

    write_recogs, write_errs, write_wer_summary, write_trn   one system on one test set (Scores)
    write_score_files, summary_line                          `asr-sft score`: those plus wer.json
    write_markdown, write_table_csv, write_plots             a benchmark's BenchmarkResults

Benchmark reports are rendered from BenchmarkResults alone (what asr_sft.benchmark writes to
results.json), so a report can be rebuilt from a results.json (BenchmarkResults.from_dict) without
decoding or scoring again.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

from asr_sft.atomic import atomic_path, write_text_atomic
from asr_sft.errors import ScoringError
from asr_sft.evaluation.hypotheses import trn_id
from asr_sft.evaluation.results import BenchmarkResults, ScoreResult, SystemResult, TestsetInfo
from asr_sft.evaluation.scoring import UTTERANCE, Interval, PairedTest, Scores


# ------------------------------------------------------------------------------- one system, one test set

def write_recogs(path: str | Path, scores: Scores) -> Path:
    """icefall's recogs-*.txt: `id:<TAB>ref=...` and `id:<TAB>hyp=...` per utterance, by id."""
    lines = []
    for k in sorted(range(len(scores)), key=scores.ids.__getitem__):
        lines.append(f"{scores.ids[k]}:\tref={' '.join(scores.refs[k])}\n")
        lines.append(f"{scores.ids[k]}:\thyp={' '.join(scores.hyps[k])}\n")
    return _write(path, "".join(lines))


def write_errs(path: str | Path, scores: Scores) -> Path:
    """icefall's errs-*.txt: totals, each utterance aligned with (REF->HYP), (REF->*) for a
    deletion and (*->HYP) for an insertion, then substitution/deletion/insertion counts and
    per-word statistics."""
    s = scores.summary()
    details, subs, dels, ins, per_word = _tally_errors(scores)
    out = [f"%WER = {_percent(s.wer)}",
           f"Errors: {s.insertions} insertions, {s.deletions} deletions, {s.substitutions} substitutions, "
           f"over {s.ref_words} reference words ({s.correct} correct)",
           f"Normalizer: {s.normalizer}",
           "Search below for sections starting with PER-UTT DETAILS:, SUBSTITUTIONS:, DELETIONS:, "
           "INSERTIONS:, PER-WORD STATS:", "", "PER-UTT DETAILS: corr or (ref->hyp)", *details, "",
           "SUBSTITUTIONS: count ref -> hyp"]
    out += [f"{n}   {r} -> {h}" for (r, h), n in _by_count(subs)]
    out += ["", "DELETIONS: count ref"] + [f"{n}   {w}" for w, n in _by_count(dels)]
    out += ["", "INSERTIONS: count hyp"] + [f"{n}   {w}" for w, n in _by_count(ins)]
    out += ["", "PER-WORD STATS: word  corr tot_errs count_in_ref count_in_hyp"]
    for word, (corr, ref_sub, hyp_sub, n_ins, n_del) in sorted(
            per_word.items(), key=lambda x: (-sum(x[1][1:]), x[0])):
        out.append(f"{word}   {corr} {ref_sub + hyp_sub + n_ins + n_del} {corr + ref_sub + n_del} "
                   f"{corr + hyp_sub + n_ins}")
    return _write(path, "\n".join(out) + "\n")


def _tally_errors(scores: Scores):
    """(per-utterance detail lines, substitution, deletion and insertion counters, per-word
    [correct, substituted as ref, substituted as hyp, inserted, deleted])."""
    subs, dels, ins = Counter(), Counter(), Counter()
    per_word: dict[str, list[int]] = {}
    details = []
    for k in sorted(range(len(scores)), key=scores.ids.__getitem__):
        shown = []
        for ref, hyp in scores.alignment(k).pairs():
            if ref == hyp:
                per_word.setdefault(ref, [0] * 5)[0] += 1
                shown.append(ref)
            elif hyp is None:
                dels[ref] += 1
                per_word.setdefault(ref, [0] * 5)[4] += 1
                shown.append(f"({ref}->*)")
            elif ref is None:
                ins[hyp] += 1
                per_word.setdefault(hyp, [0] * 5)[3] += 1
                shown.append(f"(*->{hyp})")
            else:
                subs[(ref, hyp)] += 1
                per_word.setdefault(ref, [0] * 5)[1] += 1
                per_word.setdefault(hyp, [0] * 5)[2] += 1
                shown.append(f"({ref}->{hyp})")
        details.append(f"{scores.ids[k]}:\t{' '.join(shown)}")
    return details, subs, dels, ins, per_word


def write_wer_summary(path: str | Path, scores: Scores, name: str = "test") -> Path:
    """icefall's wer-summary-*.txt (settings and WER), with CER, SER and the counts beside it."""
    s = scores.summary()
    header = "settings\tWER\tCER\tSER\terrors\tref_words\tsub\tdel\tins\tnormalizer"
    row = (f"{name}\t{_percent(s.wer)}\t{_percent(s.cer)}\t{_percent(s.ser)}\t{s.errors}\t{s.ref_words}\t"
           f"{s.substitutions}\t{s.deletions}\t{s.insertions}\t{s.normalizer}")
    return _write(path, f"{header}\n{row}\n")


def write_trn(path: str | Path, scores: Scores, side: str, speaker_field: str = "speaker") -> Path:
    """sclite trn file of the normalised words: `words (speaker-utterance)` per line.

    Score with `sctk sclite -r ref.trn trn -h hyp.trn trn -i rm -s -e utf-8 -o rsum stdout`
    (-s: our words are compared case-sensitively; -e utf-8 for non-ASCII text). Words with
    parentheses or a lone "@" are refused: sclite reads them as ids, optional words or nulls.
    """
    if side not in ("ref", "hyp"):
        raise ScoringError(f"side must be 'ref' or 'hyp', not {side!r}")
    words = scores.refs if side == "ref" else scores.hyps
    speakers = scores.fields.get(speaker_field, (None,) * len(scores))
    lines = []
    for k in range(len(scores)):
        text = " ".join(words[k])
        if "(" in text or ")" in text or "@" in words[k]:
            raise ScoringError(f"{path}: utterance {scores.ids[k]} has words sclite would misread "
                               f"(parentheses or '@'): {text[:80]!r}; use a normaliser that removes them")
        tag = f"({trn_id(scores.ids[k], speakers[k])})"
        lines.append(f"{text} {tag}\n" if text else f"{tag}\n")
    return _write(path, "".join(lines))


def _by_count(counter: Counter) -> list[tuple]:
    """Most frequent first, ties by key."""
    return sorted(counter.items(), key=lambda x: (-x[1], x[0]))


def _percent(rate: float) -> str:
    return "nan" if math.isnan(rate) else f"{100.0 * rate:.2f}"


def _write(path: str | Path, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, text)
    return path


# ------------------------------------------------------------------------------- one scored file

def write_icefall_files(folder: str | Path, scores: Scores, name: str) -> dict[str, str]:
    """recogs-NAME.txt, errs-NAME.txt and wer-summary-NAME.txt in `folder`: {kind: path}."""
    folder = Path(folder)
    return {"recogs": str(write_recogs(folder / f"recogs-{name}.txt", scores)),
            "errs": str(write_errs(folder / f"errs-{name}.txt", scores)),
            "wer_summary": str(write_wer_summary(folder / f"wer-summary-{name}.txt", scores, name))}


def write_score_files(folder: str | Path, scores: Scores, result: ScoreResult) -> dict[str, str]:
    """The icefall files plus wer.json (result.to_dict(): the summary's S/D/I/N, WER, CER, SER and
    normaliser at the top level, signals, where hypotheses and references came from)."""
    files = write_icefall_files(folder, scores, result.name)
    files["wer_json"] = str(_write(Path(folder) / "wer.json", json.dumps(result.to_dict(), indent=2) + "\n"))
    return files


def summary_line(name: str, scores: Scores) -> str:
    """`NAME: WER x.xx% [S s, D d, I i / N n], CER y.yy% (normalizer tag)`."""
    s = scores.summary()
    return (f"{name}: WER {_percent(s.wer)}% [S {s.substitutions}, D {s.deletions}, I {s.insertions} / "
            f"N {s.ref_words}], CER {_percent(s.cer)}% ({s.normalizer})")


# ------------------------------------------------------------------------------- benchmark reports

UTTERANCE_MARK = "†"  # beside an interval that resampled utterances, not speakers


def verdict(a: str, b: str, test: PairedTest, min_speakers: int = 5) -> str:
    """A paired test of systems a and b in plain words: which is better, or that the data cannot tell."""
    if math.isnan(test.delta):
        return "cannot tell: no reference words to compare on"
    if math.isnan(test.low):
        return f"cannot tell: {_plural(test.clusters, 'utterance')} to resample, too few for an interval"
    level = f"{100 * test.confidence:g}%"
    if test.low > 0 or test.high < 0:
        better = a if test.low > 0 else b
        text = f"{better} is better by {100 * abs(test.delta):.2f} WER points ({level} interval excludes 0)"
    else:
        text = f"no reliable difference ({level} interval includes 0)"
    if test.resampling == UTTERANCE:
        text += (f"; fewer than {min_speakers} speakers, so utterances were resampled: weak evidence "
                 "about other speakers")
    return text


def render_markdown(results: BenchmarkResults) -> str:
    """report.md from a benchmark's results."""
    o, norm, raw = results.options, results.normalizer_info, results.raw_normalizer_info
    out = ["# ASR benchmark", "",
           f"WER, CER and SER in %, scored with normaliser `{norm.tag}`: {norm.description}. "
           f"Raw WER uses `{raw.tag}` ({raw.description}). Intervals: {100 * o.confidence:g}% "
           f"percentile bootstrap, {o.resamples} resamples of speakers (seed {o.seed}); where a test set or "
           f"group has fewer than {o.min_speakers} speakers they resample utterances instead (marked "
           f"{UTTERANCE_MARK}: such an interval treats utterances as independent and says little about other "
           "speakers), and with fewer than 2 utterances there is none (n/a).", "",
           "Systems:"]
    for s in results.systems:
        source = (f"model `{s.model}`, decoded here" if s.model else "hypotheses from "
                  + ", ".join(f"`{f.path}`" + ("" if f.testset == "*" else f" ({f.testset})") for f in s.hyp_files))
        out.append(f"- **{s.name}**: {source}")
    for t in results.testsets:
        out += _testset_section(results, t)
    out += _speed_section(results)
    out += ["", "## Environment", "", "| | |", "|---|---|"]
    out += [f"| {k} | {v} |" for k, v in results.environment.items()]
    if results.warnings:
        out += ["", "## Warnings", ""] + [f"- {w}" for w in results.warnings]
    out += ["", "## Files", "", "- `results.json`: everything above, per-utterance alignments included",
            "- `summary.csv`: the main table",
            "- `systems/<system>/`: `recogs-`, `errs-` (aligned `(REF->HYP)`), `wer-summary-<testset>.txt`, "
            "sclite `<testset>.ref.trn` / `<testset>.hyp.trn`, scored `hyps-<testset>.jsonl`"]
    out += [f"- `{p}`" for p in results.plots or ()]
    return "\n".join(out) + "\n"


def _testset_section(results: BenchmarkResults, t: TestsetInfo) -> list[str]:
    rows = [r for r in results.results if r.testset == t.name]
    out = ["", f"## Test set `{t.name}`", "",
           f"{_plural(t.utterances, 'utterance')}, {_plural(t.speakers, 'speaker')}, "
           f"{t.audio_seconds / 60:.1f} min of audio (`{t.manifest}`).", "",
           "| system | WER [95% CI] | raw WER | sub | del | ins | ref words | CER | SER | RTFx |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        s, rtfx = r.summary, r.speed.rtfx if r.speed else None
        out.append(f"| {r.system} | {_wer_ci(s.wer, r.interval)} | {_pct(r.raw.wer)} | "
                   f"{s.substitutions} | {s.deletions} | {s.insertions} | {s.ref_words} | "
                   f"{_pct(s.cer)} | {_pct(s.ser)} | {'-' if rtfx is None else f'{rtfx:.1f}'} |")
    if (effect := t.normalizer_effect) is not None and effect.large:
        out += ["", f"**Normaliser effect:** {effect.warning(f'`{t.name}`')}."]
    out += _signals_table(rows)
    for field in rows[0].groups:
        out += _group_table(rows, field)
    pairs = [p for p in results.paired if p.testset == t.name]
    if pairs:
        out += ["", "### Paired tests", "",
                "Each pair scored on the same resampled speakers (utterances where marked "
                f"{UTTERANCE_MARK}); B - A in WER points (negative: B better).", "",
                "| A | B | WER A | WER B | B - A [95% CI] | p | verdict |", "|---|---|---|---|---|---|---|"]
        out += [f"| {p.system_a} | {p.system_b} | {_pct(p.test.wer_a)} | {_pct(p.test.wer_b)} | "
                f"{_points(p.test.delta)} [{_points(p.test.low)}, {_points(p.test.high)}]{_mark(p.test.resampling)} | "
                f"{_p(p.test.p_value)} | {p.verdict} |" for p in pairs]
    return out


def _signals_table(rows: list[SystemResult]) -> list[str]:
    """Hallucination signals: a decoding loop or runaway output shows here at a glance."""
    out = ["", "Hallucination signals: insertions per reference word; share of hypothesis 3-grams said before "
           "in the same utterance (the references' own share in brackets); hypotheses repeating one phrase "
           "4+ times in a row; empty hypotheses; and, for models decoded here, outputs stopped at "
           "max_new_tokens and utterances the temperature fallback decoded again (still failing its checks).",
           "", "| system | ins % | repeated 3-grams % | looping | empty | at max tokens | re-decoded (still failing) |",
           "|---|---|---|---|---|---|---|"]
    for r in rows:
        g, d = r.signals, r.decode
        out.append(f"| {r.system} | {_pct(g.insertion_rate)} | {_pct(g.repeated_ngram_rate)} "
                   f"({_pct(g.ref_repeated_ngram_rate)}) | {g.looping} | {g.empty} | "
                   f"{'-' if d is None else d.at_max_tokens} | "
                   f"{'-' if d is None else f'{d.redecoded} ({d.still_failing})'} |")
    return out


def _group_table(rows: list[SystemResult], field: str) -> list[str]:
    first = rows[0].groups[field].groups
    per_speaker = field == "speaker"  # each speaker's interval resamples its utterances: no marks
    out = ["", f"### WER by {field}", ""]
    if per_speaker:
        out += ["Each speaker's interval resamples that speaker's utterances.", ""]
    out += ["| " + " | ".join([field, "speakers", "utterances"] + [r.system for r in rows]) + " |",
            "|" + "---|" * (3 + len(rows))]
    for k, g in enumerate(first):
        cells = [r.groups[field].groups[k] for r in rows]
        flag = " (few)" if g.few_speakers else ""
        out.append(f"| {g.name} | {g.speakers or 'unlabelled'}{flag} | {g.utterances} | "
                   + " | ".join(f"{_pct(c.wer)} [{_pct(c.low)}, {_pct(c.high)}]"
                                + ("" if per_speaker else _mark(c.resampling)) for c in cells) + " |")
    out.append("")
    for r in rows:
        b = r.groups[field]
        worst = next(g for g in b.groups if g.name == b.worst)
        out.append(f"- {r.system}: worst {field} `{b.worst}` {_pct(worst.wer)}, best `{b.best}`; "
                   f"gap {_points(b.gap)} points [{_points(b.gap_low)}, {_points(b.gap_high)}]")
    return out


def _speed_section(results: BenchmarkResults) -> list[str]:
    timed = [r for r in results.results if r.speed]
    if not timed:
        return []
    out = ["", "## Speed", "",
           "RTFx = audio seconds / feature-to-text seconds (device-synchronised, after one warm-up batch), "
           "as the Open ASR Leaderboard counts it; audio loading is timed apart.", "",
           "| system | test set | audio s | load s | decode s | RTFx | device | dtype | batch |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in timed:
        s = r.speed
        out.append(f"| {r.system} | {r.testset} | {s.audio_seconds:.1f} | {s.load_seconds:.2f} | "
                   f"{s.decode_seconds:.2f} | {s.rtfx or 0:.1f} | {s.device_name} | {s.dtype} | {s.batch_size} |")
    out += ["", "RTFx by duration (manifest durations): batches are cut from utterances sorted by length and "
            "each utterance is charged its batch's time over the batch size. A model that pads every input "
            "(Whisper: to 30 s) is slow on short clips.", "",
            "| system | test set | duration | utterances | audio s | decode s | RTFx |", "|---|---|---|---|---|---|---|"]
    out += [f"| {r.system} | {r.testset} | {b.bucket} | {b.utterances} | {b.audio_seconds:.1f} | "
            f"{b.decode_seconds:.2f} | {'-' if b.rtfx is None else f'{b.rtfx:.1f}'} |"
            for r in timed for b in r.speed.by_duration]
    return out


def write_markdown(path: str | Path, results: BenchmarkResults) -> Path:
    return _write(path, render_markdown(results))


TABLE_COLUMNS = ("testset", "system", "normalizer", "utterances", "ref_words", "wer_pct", "wer_low_pct",
                 "wer_high_pct", "resampling", "raw_wer_pct", "substitutions", "deletions", "insertions", "errors",
                 "cer_pct", "ser_pct", "rtfx", "repeated_3gram_pct", "looping", "empty", "at_max_tokens",
                 "redecoded")


def write_table_csv(path: str | Path, results: BenchmarkResults) -> Path:
    """The main table, one row per test set and system, rates in %."""
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(TABLE_COLUMNS)
    for r in results.results:
        s, i, g, d = r.summary, r.interval, r.signals, r.decode
        writer.writerow([r.testset, r.system, s.normalizer, s.utterances, s.ref_words, _num(s.wer), _num(i.low),
                         _num(i.high), i.resampling, _num(r.raw.wer), s.substitutions, s.deletions, s.insertions,
                         s.errors, _num(s.cer), _num(s.ser), _rtfx(r.speed), _num(g.repeated_ngram_rate), g.looping,
                         g.empty, "" if d is None else d.at_max_tokens, "" if d is None else d.redecoded])
    return _write(path, buffer.getvalue())


def write_plots(folder: str | Path, results: BenchmarkResults) -> list[Path]:
    """wer-by-system.png (every test set) and <testset>-by-<field>.png, bars with interval whiskers.
    Raises ImportError without matplotlib."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no display needed (Agg)

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    systems = [s.name for s in results.systems]
    testsets = [t.name for t in results.testsets]
    paths = [_bar_chart(folder / "wer-by-system.png", Figure, testsets, systems,
                        lambda t, s: _whisker(results.result(t, s).summary.wer, results.result(t, s).interval),
                        f"WER by system ({results.normalizer_info.tag})", "test set")]
    for t in testsets:
        for field, breakdown in results.result(t, systems[0]).groups.items():
            names = [g.name for g in breakdown.groups]
            groups = {s: {g.name: g for g in results.result(t, s).groups[field].groups} for s in systems}
            paths.append(_bar_chart(folder / f"{t}-by-{field}.png", Figure, names, systems,
                                    lambda n, s: (groups[s][n].wer, groups[s][n].low, groups[s][n].high),
                                    f"{t}: WER by {field}", field))
    return paths


def _whisker(wer: float, interval: Interval) -> tuple[float, float, float]:
    return wer, interval.low, interval.high


def _bar_chart(path: Path, Figure, categories: list[str], systems: list[str], value, title: str,
               xlabel: str) -> Path:
    """Grouped bars: one group per category, one bar per system, whiskers from low to high (in %)."""
    import numpy as np

    width = 0.8 / len(systems)
    fig = Figure(figsize=(max(5.0, 0.4 * len(categories) * len(systems) + 2), 4), layout="constrained")
    ax = fig.add_subplot()
    x = np.arange(len(categories))
    for k, s in enumerate(systems):
        wer, low, high = (np.array([np.nan if v is None else 100 * v for v in column])
                          for column in zip(*(value(c, s) for c in categories)))
        errors = np.nan_to_num(np.stack([wer - low, high - wer]).clip(min=0))
        ax.bar(x + (k - (len(systems) - 1) / 2) * width, np.nan_to_num(wer), width, yerr=errors,
               capsize=3, label=s)
    ax.set_xticks(x, categories, rotation=45 if len(categories) > 6 else 0, ha="right" if len(categories) > 6 else "center")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("WER (%)")
    ax.set_title(title)
    ax.legend(fontsize="small")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return path


def _plural(n: int, noun: str) -> str:
    """"1 speaker", "2 speakers"."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _mark(resampling: str) -> str:
    return UTTERANCE_MARK if resampling == UTTERANCE else ""


def _pct(rate: float | None) -> str:
    return "n/a" if rate is None or math.isnan(rate) else f"{100 * rate:.2f}"


def _points(rate: float | None) -> str:
    return "n/a" if rate is None or math.isnan(rate) else f"{100 * rate:+.2f}"


def _p(p_value: float) -> str:
    return "n/a" if math.isnan(p_value) else f"{p_value:.3g}"


def _wer_ci(wer: float, interval: Interval) -> str:
    return f"{_pct(wer)} [{_pct(interval.low)}, {_pct(interval.high)}]{_mark(interval.resampling)}"


def _rtfx(speed) -> str:
    return "" if speed is None or speed.rtfx is None else f"{speed.rtfx:.2f}"


def _num(rate: float | None) -> str:
    return "" if rate is None or math.isnan(rate) else f"{100 * rate:.4f}"
