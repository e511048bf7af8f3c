#!/usr/bin/env bash
# The built-in demo (`make demo`): adapt the built-in en-us base model to an accent it has never
# heard, offline on a CPU, and show with honest numbers whether it helped.
#   bash recipes/demo/run.sh [--stage N] [--stop-stage M]
# Stages (each leaves a .done marker under exp/demo and is skipped when re-run):
#   1. synthesize with espeak-ng: Scottish-accented speakers (6 train / 1 dev / 3 test) and 4 new
#      American test speakers, with sentences the base model has never heard
#   2. prepare: parse the LibriSpeech layouts into manifests and validate them
#   3. fine-tune the base model on the Scottish training speakers
#   4. benchmark base vs adapted on both accents' held-out speakers (WER with speaker-bootstrap CIs,
#      paired tests), and print the before/after table
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
SECONDS=0

source recipes/stages.sh

# The base model was trained on the first 6,000 sentences of the generator with seed 1
# (recipes/synthetic_pretrain); these corpora use later ones, and voices drawn with other seeds.
synth() {
  asr-sft synth --out "$data/american" --accents en-us --speakers-per-accent 4 \
    --utterances-per-speaker 40 --splits test=4 --seed 11 --sentence-seed 1 --sentence-offset 6000
  asr-sft synth --out "$data/scottish" --accents en-gb-scotland --speakers-per-accent 10 \
    --utterances-per-speaker 50 --splits train=6,dev=1,test=3 --seed 12 --sentence-seed 1 \
    --sentence-offset 6200 --num-workers 2
}
run_stage 1 synth synth

prepare() {
  asr-sft prepare librispeech --root "$data/american" --out "$data/manifests/american"
  asr-sft prepare librispeech --root "$data/scottish" --out "$data/manifests/scottish"
  for m in "$data"/manifests/*/*.jsonl; do asr-sft validate "$m"; done
}
run_stage 2 prepare prepare

run_stage 3 adapt asr-sft train --config recipes/demo/conf/adapt_scottish.toml \
  data.train_manifest="$data/manifests/scottish/train.jsonl" \
  data.dev_manifest="$data/manifests/scottish/dev.jsonl" \
  train.output_dir="$exp/adapt"

compare() {
  asr-sft bench --system base=builtin:wav2vec2-small-en-us --system adapted="$exp/adapt/checkpoints/best" \
    --testset scottish="$data/manifests/scottish/test.jsonl" \
    --testset american="$data/manifests/american/test.jsonl" \
    --normalizer librispeech --group-by speaker --out "$exp/bench"
}
run_stage 4 compare compare
if [ -f "$exp/bench/results.json" ]; then  # printed on every run, also when the stages were done
  python recipes/demo/before_after.py "$exp/bench/results.json" --target scottish --source american
fi
echo "demo finished in ${SECONDS}s: report in $exp/bench/report.md"
