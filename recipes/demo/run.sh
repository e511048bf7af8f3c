#!/usr/bin/env bash
# The built-in demo: everything offline on CPU, from synthetic speech.
#   bash recipes/demo/run.sh [--stage N] [--stop-stage M]
# Stages (each leaves a .done marker under exp/demo and is skipped when re-run):
#   1. synthesize a LibriSpeech-layout corpus with espeak-ng (en-us and en-gb-scotland speakers)
#   2. prepare: parse the corpus layout back into manifests (the same parser real LibriSpeech uses)
#   3. validate the manifests
#   4. extract Whisper log-mel and wav2vec2 features and print a summary
set -euo pipefail
cd "$(dirname "$0")/../.."

stage=1
stop_stage=100
data=data/demo
exp=exp/demo
while [ $# -gt 0 ]; do
  case "$1" in
    --stage) stage=$2; shift 2 ;;
    --stop-stage) stop_stage=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
mkdir -p "$exp"

run_stage() {  # run_stage N NAME COMMAND...: skip when outside the range or already done
  local n=$1 name=$2; shift 2
  if [ "$n" -lt "$stage" ] || [ "$n" -gt "$stop_stage" ]; then return; fi
  if [ -f "$exp/.stage$n.$name.done" ]; then echo "stage $n ($name): done already"; return; fi
  echo "=== stage $n: $name"
  "$@"
  touch "$exp/.stage$n.$name.done"
}

run_stage 1 synth asr-sft synth --out "$data/synth" --accents en-us,en-gb-scotland \
  --speakers-per-accent 6 --utterances-per-speaker 8 --seed 0

run_stage 2 prepare asr-sft prepare librispeech --root "$data/synth" --out "$data/manifests"

validate_all() {
  for m in "$data"/manifests/*.jsonl; do asr-sft validate "$m"; done
}
run_stage 3 validate validate_all

features_all() {
  for m in "$data"/manifests/*.jsonl; do
    asr-sft features "$m" --kind whisper_mel
    asr-sft features "$m" --kind wav2vec2
  done
}
run_stage 4 features features_all
echo "demo finished: corpus in $data/synth, manifests in $data/manifests"
