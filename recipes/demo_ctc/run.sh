#!/usr/bin/env bash
# The built-in demo (`make demo-ctc`): adapt the built-in en-us base model to an accent it has never
# heard, offline on a CPU, and show with honest numbers whether it helped.
#   bash recipes/demo_ctc/run.sh [--stage N] [--stop-stage M]
# Stages (each leaves a .done marker under exp/demo_ctc and is skipped when re-run):
#   1. synthesize with espeak-ng: Scottish-accented speakers (6 train / 1 dev / 3 test) and new
#      American speakers (10 train / 2 dev / 4 test), with sentences the base model has never heard
#   2. prepare: parse the LibriSpeech layouts into manifests, validate them, and mix the Scottish
#      and American train (and dev) sets
#   3. fine-tune the base model on the mix: the Scottish speakers teach the new accent, and the
#      American ones are rehearsal data that keep it from forgetting the accent it knew
#   4. benchmark base vs adapted on both accents' held-out speakers (WER with speaker-bootstrap CIs,
#      paired tests), and print the before/after table
set -euo pipefail
cd "$(dirname "$0")/../.."

data=data/demo_ctc
exp=exp/demo_ctc
source recipes/stages.sh
parse_stage_args "$@"
mkdir -p "$exp"
SECONDS=0

# The base model was trained on the first 6,000 sentences of the generator with seed 1
# (recipes/synthetic_pretrain); these corpora use later ones, and voices drawn with other seeds.
# Many distinct sentences matter as much as voices: a few hundred, seen for many epochs, teach the
# model's implicit language model those sentences and cost it accuracy on new text.
synth() {
  asr-sft synth --out "$data/american" --accents en-us --speakers-per-accent 16 \
    --utterances-per-speaker 40 --splits train=10,dev=2,test=4 --seed 11 --sentence-seed 1 \
    --sentence-offset 6000 --num-workers 2
  asr-sft synth --out "$data/scottish" --accents en-gb-scotland --speakers-per-accent 10 \
    --utterances-per-speaker 80 --splits train=6,dev=1,test=3 --seed 12 --sentence-seed 1 \
    --sentence-offset 6700 --num-workers 2
}
run_stage 1 synth synth

prepare() {
  asr-sft prepare librispeech --root "$data/american" --out "$data/manifests/american"
  asr-sft prepare librispeech --root "$data/scottish" --out "$data/manifests/scottish"
  for split in train dev; do
    asr-sft validate "$data/manifests/scottish/$split.jsonl" "$data/manifests/american/$split.jsonl" \
      --out "$data/manifests/mixed/$split.jsonl"
  done
  asr-sft validate "$data"/manifests/*/test.jsonl
}
run_stage 2 prepare prepare

run_stage 3 adapt asr-sft train --config recipes/demo_ctc/conf/adapt_scottish.toml \
  data.train_manifest="$data/manifests/mixed/train.jsonl" \
  data.dev_manifest="$data/manifests/mixed/dev.jsonl" \
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
