"""The accent-adaptation report: what each strategy gained per group, what it cost, from the
recipe's benchmark results (asr-sft bench results.json, read through BenchmarkResults).

    python recipes/accent_adaptation/report.py --exp exp/accent_adaptation \
        --groups data/accent_adaptation/groups/groups.json --strategies "lora pooled" --caps "" \
        --out exp/accent_adaptation/report

Reads <exp>/bench/results.json (every system on every test set; `base` = the unadapted model),
<exp>/bench_caps/results.json (with caps), the stage markers <exp>/.stage4.<job>.done (wall seconds
of each training job and pseudo-labelling run), the checkpoints (adapter or model size) and
<exp>/pseudo_label/<group>/pseudo_label.json. Writes report.md, report.json (REPORT_FORMAT) and
wer_by_group.png and, with caps, data_efficiency.png.

Which system answers for a group: a per-group strategy's routed system (`<strategy>-routed`, every
utterance decoded with its own group's adapter or model, the general set with the base), `pooled`
for the pooled fine-tune. Per-group models (`<strategy>-<group>`) on every test set give the
cross-group table and the forgetting each adapter would cause if it served everyone.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from asr_sft.evaluation.results import BenchmarkResults
from asr_sft.models.lora import ADAPTER_WEIGHTS, FULL_WEIGHTS
from asr_sft.models.resolve import follow_pointer

REPORT_FORMAT = "asr_sft.accent_report/v1"
BASE, GENERAL = "base", "general"  # the recipe's names: the unadapted system, the real-speech test set
SIGNIFICANCE = 0.05  # a paired p-value below this is called significant
MB = 1e6


# --- reading --------------------------------------------------------------------------------------
def load_results(path: Path) -> BenchmarkResults | None:
    if not path.is_file():
        return None
    return BenchmarkResults.from_dict(json.loads(path.read_text(encoding="utf-8")), where=str(path))


def stage_seconds(exp: Path, job: str) -> float | None:
    """Wall seconds of a recipe job from its stage marker (recipes/stages.sh: line 1 'seconds S')."""
    for marker in exp.glob(f".stage*.{job}.done"):
        first = marker.read_text(encoding="utf-8").splitlines()[:1]
        if first and first[0].startswith("seconds "):
            return float(first[0].split()[1])
    return None


def weights_mb(run: Path) -> tuple[float, str] | None:
    """(MB, kind) of the best checkpoint's trained weights: the adapter alone, or the whole model."""
    folder = follow_pointer(run / "checkpoints" / "best")
    if folder is None:
        return None
    for name, kind in ((ADAPTER_WEIGHTS, "LoRA adapter"), (FULL_WEIGHTS, "whole model")):
        if (folder / name).is_file():
            return (folder / name).stat().st_size / MB, kind
    return None


# --- numbers --------------------------------------------------------------------------------------
def relative(before: float, after: float) -> float:
    return (after - before) / before if before else math.nan


def cell(results: BenchmarkResults, testset: str, system: str) -> dict | None:
    """WER, its interval and what was resampled, of one system on one test set (None: not run)."""
    if system not in {s.name for s in results.systems}:
        return None
    r = results.result(testset, system)
    return {"wer": r.summary.wer, "low": r.interval.low, "high": r.interval.high,
            "resampling": r.interval.resampling, "utterances": r.summary.utterances, "ref_words": r.summary.ref_words}


def paired(results: BenchmarkResults, testset: str, system: str) -> dict | None:
    """The paired test of `system` against the base on a test set, as after - before."""
    p = results.pair(testset, BASE, system)
    if p is None:
        return None
    sign = 1.0 if p.system_a == BASE else -1.0
    low, high = sorted((sign * p.test.low, sign * p.test.high))
    return {"delta": sign * p.test.delta, "low": low, "high": high, "p_value": p.test.p_value,
            "resampling": p.test.resampling, "verdict": p.verdict}


def answering_system(strategy: str, names: set[str]) -> str | None:
    """The system that stands for a strategy on every test set (module docstring)."""
    name = "pooled" if strategy == "pooled" else f"{strategy}-routed"
    return name if name in names else None


def compare(results: BenchmarkResults, testset: str, system: str) -> dict:
    before, after = cell(results, testset, BASE), cell(results, testset, system)
    return {"system": system, "before": before, "after": after,
            "relative": relative(before["wer"], after["wer"]), "paired": paired(results, testset, system)}


def build_report(exp: Path, groups: dict, strategies: list[str], caps: list[str]) -> dict:
    results = load_results(exp / "bench" / "results.json")
    if results is None:
        raise SystemExit(f"{exp / 'bench' / 'results.json'}: not found; run stage 5 (evaluate) first")
    names = {s.name for s in results.systems}
    testsets = [t.name for t in results.testsets]
    tested = [t for t in testsets if t != GENERAL]
    report = {"format": REPORT_FORMAT, "exp": str(exp.absolute()), "benchmark": str(exp / "bench" / "results.json"),
              "normalizer": results.normalizer_info.tag, "decode": results.decode,
              "environment": dict(results.environment),
              "testsets": [t.to_dict() for t in results.testsets],
              "groups": {g: {k: v for k, v in e.items() if k in ("train_minutes", "speakers", "dev_is_train")}
                         for g, e in groups["groups"].items()},
              "baseline": {t: cell(results, t, BASE) for t in testsets}, "strategies": {}}
    best = min(tested, key=lambda t: report["baseline"][t]["wer"]) if tested else None
    report["gap"] = {"best_group": best, "worst_group": max(tested, key=lambda t: report["baseline"][t]["wer"])
                     if tested else None}
    for strategy in strategies:
        system = answering_system(strategy, names)
        entry = {"system": system, "groups": {}, "general": None, "models": {}}
        if system is not None:
            entry["groups"] = {t: compare(results, t, system) for t in tested}
            if GENERAL in testsets:
                entry["general"] = compare(results, GENERAL, system)
        runs = {"pooled": exp / "pooled"} if strategy == "pooled" else \
            {g: exp / strategy / g for g in groups["groups"]}
        for key, run in runs.items():
            model = "pooled" if strategy == "pooled" else f"{strategy}-{key}"
            size = weights_mb(run)
            job = "pooled" if strategy == "pooled" else f"{strategy}-{key}"
            m = {"system": model if model in names else None, "size_mb": size[0] if size else None,
                 "kind": size[1] if size else None, "train_seconds": stage_seconds(exp, job)}
            if strategy == "pseudo":
                m["pseudo_label_seconds"] = stage_seconds(exp, f"pseudo-label-{key}")
                m["pseudo_label"] = pseudo_summary(exp / "pseudo_label" / key / "pseudo_label.json")
            if m["system"] is not None:
                m["testsets"] = {t: cell(results, t, model) for t in testsets}
            entry["models"][key] = m
        models = entry["models"].values()
        entry["size_mb"] = sum(m["size_mb"] or 0.0 for m in models)
        entry["train_seconds"] = sum((m["train_seconds"] or 0.0) + (m.get("pseudo_label_seconds") or 0.0)
                                     for m in models)
        report["strategies"][strategy] = entry
    report["caps"] = caps_curve(exp, groups, caps)
    report["noise"] = noise_table(exp)
    report["warnings"] = list(results.warnings)
    return report


def noise_table(exp: Path) -> dict | None:
    """{system: [{testset, wer, interval, paired against the base}]} over the general set, clean
    and at each SNR (bench_noise, run with NOISE_SNRS), or None."""
    results = load_results(exp / "bench_noise" / "results.json")
    if results is None:
        return None
    table = {}
    for system in (s.name for s in results.systems):
        table[system] = [{"testset": t.name, **cell(results, t.name, system),
                          "paired": None if system == BASE else paired(results, t.name, system)}
                         for t in results.testsets]
    return table


def pseudo_summary(path: Path) -> dict | None:
    if not path.is_file():
        return None
    d = json.loads(path.read_text(encoding="utf-8"))
    return {k: d[k] for k in ("teacher", "agreement_model", "utterances", "kept", "kept_seconds", "dropped_by",
                              "wer_all", "wer_kept", "wer_dropped")}


def caps_curve(exp: Path, groups: dict, caps: list[str]) -> dict | None:
    """Per group: [(training minutes, WER)] from 0 (the base) through each cap to all of train."""
    results = load_results(exp / "bench_caps" / "results.json")
    if not caps or results is None:
        return None
    names = {s.name for s in results.systems}
    curve = {}
    for t in (t.name for t in results.testsets):
        g = groups["groups"][t]
        points = [{"label": BASE, "minutes": 0.0, **cell(results, t, BASE)}]
        for cap in caps:
            if f"lora-cap{cap}" in names and cap in g["caps"]:
                points.append({"label": cap, "minutes": g["caps"][cap]["minutes"],
                               **cell(results, t, f"lora-cap{cap}")})
        if "lora-routed" in names:
            points.append({"label": "all", "minutes": g["train_minutes"], **cell(results, t, "lora-routed")})
        curve[t] = points
    return curve


def json_ready(x):
    """NaN (no interval, no reference words) as null: JSON has no NaN."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: json_ready(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_ready(v) for v in x]
    return x


# --- rendering ------------------------------------------------------------------------------------
def pct(x: float | None) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}"


def with_ci(c: dict | None) -> str:
    if c is None:
        return "n/a"
    ci = "" if math.isnan(c["low"]) else f" [{pct(c['low'])}, {pct(c['high'])}]"
    return f"{pct(c['wer'])}{ci}{'*' if c['resampling'] == 'utterance' else ''}"


def change_row(label: str, testset: str, c: dict) -> str:
    p = c["paired"]
    delta = "n/a" if p is None else f"{100 * p['delta']:+.1f} [{100 * p['low']:+.1f}, {100 * p['high']:+.1f}]" \
        if not math.isnan(p["low"]) else f"{100 * p['delta']:+.1f}"
    pv = "n/a" if p is None or math.isnan(p["p_value"]) else f"{p['p_value']:.3f}"
    sig = "" if p is None or math.isnan(p["p_value"]) else (" (significant)" if p["p_value"] < SIGNIFICANCE else "")
    rel = "n/a" if math.isnan(c["relative"]) else f"{100 * c['relative']:+.0f}%"
    return (f"| {label} | {testset} | {with_ci(c['before'])} | {with_ci(c['after'])} | {rel} | {delta} | "
            f"{pv}{sig} |")


def render(report: dict) -> str:
    env, d = report["environment"], report["decode"]
    decoding = "n/a"
    if d:
        search = "greedy" if d["num_beams"] == 1 else f"beam search ({d['num_beams']})"
        decoding = (f"{search}, at most {d['max_new_tokens']} tokens, temperature fallback "
                    f"{'on' if d['fallback'] else 'off'}")
    out = ["# Accent adaptation", "",
           f"WER in % (normaliser `{report['normalizer']}`), with 95% bootstrap intervals over speakers; `*`: fewer "
           "than 5 speakers, so utterances were resampled (weak evidence about new speakers). Paired tests: "
           "bootstrap of the WER difference against the unadapted base on the same utterances. "
           f"Decoding: {decoding}. Machine: {env.get('device') or env.get('cpu')}, {env.get('cpu_count')} CPUs; "
           f"torch {env.get('torch')}, transformers {env.get('transformers')}.", "", "## Groups and test sets", "",
           "| group | train speakers | train minutes | dev | test speakers |", "|---|---|---|---|---|"]
    for g, e in report["groups"].items():
        out.append(f"| {g} | {e['speakers']['train']} | {e['train_minutes']:.1f} | "
                   f"{'= train' if e['dev_is_train'] else e['speakers']['dev']} | {e['speakers']['test']} |")
    out += ["", "| test set | utterances | speakers | audio (s) |", "|---|---|---|---|"]
    out += [f"| {t['name']} | {t['utterances']} | {t['speakers']} | {t['audio_seconds']:.0f} |"
            for t in report["testsets"]]
    out += ["", "## The gap (unadapted base)", "", "| test set | base WER |", "|---|---|"]
    out += [f"| {t} | {with_ci(c)} |" for t, c in report["baseline"].items()]
    if report["gap"]["best_group"]:
        b, w = report["gap"]["best_group"], report["gap"]["worst_group"]
        out += ["", f"Best group {b} ({pct(report['baseline'][b]['wer'])}%), worst {w} "
                    f"({pct(report['baseline'][w]['wer'])}%): a gap of "
                    f"{100 * (report['baseline'][w]['wer'] - report['baseline'][b]['wer']):.1f} points."]
    out += ["", "## Per-group WER before/after", "",
            "| strategy (system) | test set | base WER | adapted WER | relative | change, points [95% CI] | paired p |",
            "|---|---|---|---|---|---|---|"]
    for s, e in report["strategies"].items():
        for t, c in e["groups"].items():
            out.append(change_row(f"{s} ({e['system']})", t, c))
    out += ["", "## Forgetting on the general set (real human speech)", "",
            "| strategy (system) | test set | base WER | adapted WER | relative | change, points [95% CI] | paired p |",
            "|---|---|---|---|---|---|---|"]
    for s, e in report["strategies"].items():
        if e["general"]:
            out.append(change_row(f"{s} ({e['system']})", GENERAL, e["general"]))
    cross = [(s, k, m) for s, e in report["strategies"].items() for k, m in e["models"].items()
             if m.get("testsets") and s != "pooled"]
    if cross:
        testsets = [t["name"] for t in report["testsets"]]
        out += ["", "## Every per-group model on every test set", "",
                "Rows: the model trained on one group, decoding everything (no routing). The diagonal is what "
                "routing gives each group; the general column is the forgetting of an adapter that served everyone.",
                "", "| model | " + " | ".join(testsets) + " |", "|---" * (len(testsets) + 1) + "|",
                f"| {BASE} | " + " | ".join(pct(report["baseline"][t]["wer"]) for t in testsets) + " |"]
        for s, k, m in cross:
            out.append(f"| {m['system']} | " + " | ".join(pct(m["testsets"][t]["wer"]) for t in testsets) + " |")
    out += ["", "## Cost", "", "| strategy | models | trained weights each (MB) | total (MB) | training time (s) |",
            "|---|---|---|---|---|"]
    for s, e in report["strategies"].items():
        sizes = sorted({f"{m['size_mb']:.2f} ({m['kind']})" for m in e["models"].values() if m["size_mb"] is not None})
        times = [m["train_seconds"] for m in e["models"].values() if m["train_seconds"] is not None]
        pl = [m.get("pseudo_label_seconds") for m in e["models"].values() if m.get("pseudo_label_seconds")]
        time = f"{e['train_seconds']:.0f}" + (f" (of which pseudo-labelling {sum(pl):.0f})" if pl else "") + \
            (f"; per model {min(times):.0f}-{max(times):.0f}" if len(times) > 1 else "")
        out.append(f"| {s} | {len(e['models'])} | {', '.join(sizes) or 'n/a'} | {e['size_mb']:.2f} | {time} |")
    out.append("")
    out.append("Training time is the wall time of each `asr-sft train` (with start-up and its dev evaluation), from "
               "the stage markers; on a shared machine it depends on the load.")
    pseudo = [(k, m["pseudo_label"]) for e in report["strategies"].values() for k, m in e["models"].items()
              if m.get("pseudo_label")]
    if pseudo:
        out += ["", "## Pseudo-labelling: the filter's effect", "",
                f"Teacher {pseudo[0][1]['teacher']}" + (f", agreement with {pseudo[0][1]['agreement_model']}"
                                                        if pseudo[0][1]["agreement_model"] else "")
                + "; the teacher's WER is against the true transcripts, which training never saw.", "",
                "| group | utterances | kept | teacher WER all | kept | dropped | dropped by |",
                "|---|---|---|---|---|---|---|"]
        for k, p in pseudo:
            reasons = ", ".join(f"{r} {n}" for r, n in p["dropped_by"].items() if n) or "none"
            out.append(f"| {k} | {p['utterances']} | {p['kept']} | {pct(p['wer_all'])} | {pct(p['wer_kept'])} | "
                       f"{pct(p['wer_dropped'])} | {reasons} |")
    if report["caps"]:
        out += ["", "## Data efficiency (LoRA per group on nested training caps)", "",
                "| test set | " + " | ".join(f"{p['label']} ({p['minutes']:.1f} min)" for p in
                                            next(iter(report["caps"].values()))) + " |"]
        out.append("|---" * (1 + len(next(iter(report["caps"].values())))) + "|")
        for t, points in report["caps"].items():
            out.append(f"| {t} | " + " | ".join(with_ci(p) for p in points) + " |")
    if report.get("noise"):
        rows = report["noise"]
        sets = [c["testset"] for c in next(iter(rows.values()))]
        out += ["", "## Robustness to noise (the general set, clean and with noise at fixed SNRs)", "",
                "The same utterances at each SNR (`asr-sft noisy`), so each system's change against the base "
                "is a paired test; routed adapters decode the general set with the base.", "",
                "| system | " + " | ".join(sets) + " |", "|---" * (1 + len(sets)) + "|"]
        for system, cells in rows.items():
            out.append(f"| {system} | " + " | ".join(
                with_ci(c) + ("" if c["paired"] is None else f" ({100 * c['paired']['delta']:+.1f}, "
                                                             f"p={c['paired']['p_value']:.3f})") for c in cells) + " |")
    if report.get("plots"):
        out += ["", "## Plots", ""] + [f"![{p}]({p})" for p in report["plots"]]
    if report["warnings"]:
        out += ["", "## Benchmark warnings", ""] + [f"- {w}" for w in report["warnings"]]
    return "\n".join(out) + "\n"


def plot(report: dict, out: Path) -> list[str]:
    """wer_by_group.png (base and each strategy per test set, interval whiskers) and, with caps,
    data_efficiency.png (WER against training minutes per group)."""
    from matplotlib.figure import Figure

    testsets = list(report["baseline"])
    series = [(BASE, {t: report["baseline"][t] for t in testsets})]
    for s, e in report["strategies"].items():
        if e["system"]:
            series.append((e["system"], {**{t: c["after"] for t, c in e["groups"].items()},
                                         **({GENERAL: e["general"]["after"]} if e["general"] else {})}))
    fig = Figure(figsize=(max(6, 1.6 * len(testsets)), 4))
    ax = fig.subplots()
    width = 0.8 / len(series)
    for i, (name, cells) in enumerate(series):
        xs = [k + i * width for k, t in enumerate(testsets) if cells.get(t)]
        ys = [100 * cells[t]["wer"] for t in testsets if cells.get(t)]
        err = [[max(0.0, y - 100 * cells[t]["low"]) if not math.isnan(cells[t]["low"]) else 0 for y, t in
                zip(ys, [t for t in testsets if cells.get(t)])],
               [max(0.0, 100 * cells[t]["high"] - y) if not math.isnan(cells[t]["high"]) else 0 for y, t in
                zip(ys, [t for t in testsets if cells.get(t)])]]
        ax.bar(xs, ys, width, yerr=err, capsize=3, label=name)
    ax.set_xticks([k + 0.4 - width / 2 for k in range(len(testsets))], testsets, rotation=15)
    ax.set_ylabel(f"WER (%), {report['normalizer']}")
    ax.set_title("WER per test set: base and each strategy (95% intervals)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / "wer_by_group.png", dpi=110)
    made = ["wer_by_group.png"]
    if report["caps"]:
        fig = Figure(figsize=(6, 4))
        ax = fig.subplots()
        for t, points in report["caps"].items():
            ax.plot([p["minutes"] for p in points], [100 * p["wer"] for p in points], marker="o", label=t)
        ax.set_xlabel("training audio per group (minutes)")
        ax.set_ylabel("WER (%)")
        ax.set_title("Data efficiency: LoRA per group")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "data_efficiency.png", dpi=110)
        made.append("data_efficiency.png")
    return made


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp", type=Path, required=True)
    parser.add_argument("--groups", type=Path, required=True, help="groups.json of groups.py by-group")
    parser.add_argument("--strategies", default="lora pooled")
    parser.add_argument("--caps", default="")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    groups = json.loads(args.groups.read_text(encoding="utf-8"))
    report = build_report(args.exp, groups, args.strategies.split(), [c for c in args.caps.split(",") if c])
    try:
        report["plots"] = plot(report, args.out)
    except ImportError as err:
        report["plots"] = []
        report["warnings"].append(f"no plots: matplotlib is not installed ({err})")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.json").write_text(json.dumps(json_ready(report), indent=1, allow_nan=False) + "\n",
                                          encoding="utf-8")
    (args.out / "report.md").write_text(render(report), encoding="utf-8")
    print(f"wrote {args.out / 'report.md'}, {args.out / 'report.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
