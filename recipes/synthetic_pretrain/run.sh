#!/usr/bin/env bash
# Train the small wav2vec2 CTC base model that asr_sft ships (asr_sft/assets/base_model), from
# synthetic American English speech, and write it with a model card.
#   bash recipes/synthetic_pretrain/run.sh [--stage N] [--stop-stage M]
# Stages (.done markers under exp/synthetic_pretrain):
#   1. synthesize en-us speech: 60 voices (52 train / 4 dev / 4 test), 100 sentences each, from the
#      package's sentence generator (distinct sentences, none shared between splits)
#   2. initialise a random `small` wav2vec2 (5.5 M parameters) with a character vocabulary
#   3. train (conf/small_en_us.toml)
#   4. decode and score the held-out test speakers
#   5. export the best checkpoint as fp16 safetensors + model card into asr_sft/assets/base_model
set -euo pipefail
cd "$(dirname "$0")/../.."
data=data/pretrain; exp=exp/synthetic_pretrain
conf=recipes/synthetic_pretrain/conf/small_en_us.toml
source recipes/stages.sh
parse_stage_args "$@"
mkdir -p "$exp"

run_stage 1 synth asr-sft synth --out "$data/synth" --accents en-us --speakers-per-accent 60 \
  --utterances-per-speaker 100 --splits train=52,dev=4,test=4 --seed 1 --num-workers 2

run_stage 2 init asr-sft init-model --arch wav2vec2 --size small --out "$exp/init" \
  --vocab-from "$data/synth/manifests/train.jsonl" --seed 0 --overwrite

run_stage 3 train asr-sft train --config "$conf" \
  data.train_manifest="$data/synth/manifests/train.jsonl" \
  data.dev_manifest="$data/synth/manifests/dev.jsonl" \
  model.name_or_path="$exp/init" train.output_dir="$exp/train"

score_test() {
  asr-sft decode --model "$exp/train/checkpoints/best" --manifest "$data/synth/manifests/test.jsonl" --out "$exp/decode-test"
  asr-sft score --hyps "$exp/decode-test/hyps.jsonl" --normalizer librispeech --out "$exp/decode-test"
}
run_stage 4 score score_test

run_stage 5 export python recipes/synthetic_pretrain/export.py --exp "$exp" --data "$data" \
  --out asr_sft/assets/base_model
