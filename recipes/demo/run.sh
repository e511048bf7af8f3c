#!/usr/bin/env bash
# The main job (`make demo`): fine-tune real OpenAI Whisper tiny.en (built in, offline) to an
# English accent it hears badly, on a CPU, and show with honest numbers what it gained on that
# accent and what it cost on real human speech.
#   bash recipes/demo/run.sh [--stage N] [--stop-stage M]
# Stages (each leaves a .done marker under exp/demo and is skipped when re-run):
#   1. synthesize with espeak-ng: Scottish-accented speakers (target accent: 6 train / 1 dev / 2 test,
#      40 sentences each) and American speakers (4 train as rehearsal data, 1 dev, 3 held-out test)
#   2. prepare manifests: the synthetic corpora, and a real-speech test set pooled from the shared
#      real clips (21) and the FSDD test split (spoken digits by six speakers, one of each digit per
#      speaker: 60) for the forgetting check
#   3. fine-tune builtin:whisper-tiny.en on the Scottish + American mix (conf/adapt_scottish.toml)
#   4. benchmark base vs adapted on held-out Scottish and American speakers and on real speech
#      (WER with bootstrap intervals, paired tests), and print the before/after table
set -euo pipefail
cd "$(dirname "$0")/../.."

data=${DEMO_DATA:-data/demo}
exp=${DEMO_EXP:-exp/demo}
shared=${SHARED_DATA:-../shared/data}
source recipes/stages.sh
parse_stage_args "$@"
mkdir -p "$exp"
SECONDS=0

synth() {
  asr-sft synth --out "$data/scottish" --accents en-gb-scotland --speakers-per-accent 9 \
    --utterances-per-speaker 40 --splits train=6,dev=1,test=2 --seed 21 --sentence-seed 3 \
    --num-workers 2
  asr-sft synth --out "$data/american" --accents en-us --speakers-per-accent 8 \
    --utterances-per-speaker 20 --splits train=4,dev=1,test=3 --seed 22 --sentence-seed 3 \
    --sentence-offset 2000 --num-workers 2
}
run_stage 1 synth synth

prepare() {
  asr-sft prepare librispeech --root "$data/scottish" --out "$data/manifests/scottish"
  asr-sft prepare librispeech --root "$data/american" --out "$data/manifests/american"
  for split in train dev; do
    asr-sft validate "$data/manifests/scottish/$split.jsonl" "$data/manifests/american/$split.jsonl" \
      --out "$data/manifests/mixed/$split.jsonl"
  done
  asr-sft prepare folder --table "$shared/real-clips/transcripts.tsv" --audio-root "$shared/real-clips" \
    --out "$data/manifests/real/clips.jsonl" --corpus real-clips
  asr-sft prepare fsdd --root "$shared/fsdd" --out "$data/manifests/real" --split test \
    --per-speaker-digit 1
  asr-sft validate "$data/manifests/real/clips.jsonl" "$data/manifests/real/fsdd_test.jsonl" \
    --out "$data/manifests/real/test.jsonl"
}
run_stage 2 prepare prepare

run_stage 3 adapt asr-sft train --config recipes/demo/conf/adapt_scottish.toml \
  data.train_manifest="$data/manifests/mixed/train.jsonl" \
  data.dev_manifest="$data/manifests/mixed/dev.jsonl" \
  train.output_dir="$exp/adapt"

compare() {
  asr-sft bench --system base=builtin:whisper-tiny.en --system adapted="$exp/adapt/checkpoints/best" \
    --testset scottish="$data/manifests/scottish/test.jsonl" \
    --testset american="$data/manifests/american/test.jsonl" \
    --testset real="$data/manifests/real/test.jsonl" \
    --normalizer whisper_en_digits --group-by corpus --no-variable-length --out "$exp/bench"
}
run_stage 4 compare compare
if [ -f "$exp/bench/results.json" ]; then  # printed on every run, also when the stages were done
  python recipes/demo/before_after.py "$exp/bench/results.json" --target scottish --source american \
    --real real --min-target-gain 0.60 --max-source-loss 0.10 --max-real-rise 1.0
fi
echo "demo finished in ${SECONDS}s: report in $exp/bench/report.md"
