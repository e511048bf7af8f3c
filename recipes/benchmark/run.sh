#!/usr/bin/env bash
# Benchmark ASR systems on test sets: WER/CER with S/D/I, speaker-bootstrap intervals (utterances
# where a test set or group has fewer than 5 speakers), hallucination signals, groups,
# paired tests between every pair of systems, RTFx, and a report (asr-sft bench).
#   bash recipes/benchmark/run.sh --system base=exp/base/checkpoints/best --system tuned=exp/tuned/best \
#     --system whisper=exp/whisper/hyps.trn --testset clean=data/manifests/test-clean.jsonl \
#     --testset accented=data/manifests/accented.jsonl [--normalizer whisper_en] \
#     [--group-by speaker,accent] [--out exp/benchmark] [--stage N] [--stop-stage M] [-- BENCH OPTIONS]
# A system is a model folder, hub id or builtin:<name> (decoded here), or a hypothesis file
# (hyps.jsonl, Kaldi text, sclite .trn); NAME@TESTSET=FILE gives one test set's hypotheses.
# Options after `--` go to `asr-sft bench` as they are (e.g. -- --device cuda --batch-size 64).
# Stages (a .done marker under --out records each stage's command; a stage is skipped when re-run
# with the same command, and run again when the command changed):
#   1. validate the test set manifests
#   2. decode (models) and score every system on every test set, write the report
#   3. print the main table and where everything is (every time)
set -euo pipefail
cd "$(dirname "$0")/../.."

stage=1
stop_stage=100
out=exp/benchmark
normalizer=whisper_en
group_by=speaker,accent,gender,corpus,duration_bucket
systems=()
testsets=()
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --stage) stage=$2; shift 2 ;;
    --stop-stage) stop_stage=$2; shift 2 ;;
    --system) systems+=(--system "$2"); shift 2 ;;
    --testset) testsets+=(--testset "$2"); shift 2 ;;
    --normalizer) normalizer=$2; shift 2 ;;
    --group-by) group_by=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    *) echo "unknown option $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done
if [ ${#systems[@]} -eq 0 ] || [ ${#testsets[@]} -eq 0 ]; then
  echo "give at least one --system NAME=PATH and one --testset NAME=MANIFEST (see the header of $0)" >&2
  exit 2
fi
mkdir -p "$out"

exp=$out rerun_on_change=1
source recipes/stages.sh

validate_testsets() {
  local i
  for ((i = 1; i < ${#testsets[@]}; i += 2)); do asr-sft validate "${testsets[i]#*=}"; done
}
run_stage 1 validate validate_testsets "${testsets[@]}"

run_stage 2 bench asr-sft bench "${systems[@]}" "${testsets[@]}" --normalizer "$normalizer" \
  --group-by "$group_by" --out "$out" "${extra[@]}"

show() {
  echo "main table ($out/summary.csv):"
  column -s, -t < "$out/summary.csv" | cut -c1-160
  echo "report: $out/report.md   everything: $out/results.json   plots: $out/plots/"
  echo "per system: $out/systems/<system>/{recogs,errs,wer-summary}-<testset>.txt, <testset>.{ref,hyp}.trn"
}
if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then echo "=== stage 3: show"; show; fi
