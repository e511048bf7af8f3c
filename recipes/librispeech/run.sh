#!/usr/bin/env bash
# Fine-tune on LibriSpeech train-clean-100 and score test-clean/test-other: wav2vec 2.0 BASE with
# CTC (default, conf/wav2vec2_base_100h.toml) or Whisper seq2seq (--conf conf/whisper_100h.toml,
# built-in tiny.en by default; `make librispeech-whisper`). Needs internet (7.3 GB of archives;
# ~15 GB of disk with them kept) and a GPU to be useful: the wav2vec2 config runs 80k updates of
# 1,600 s of audio (an estimated 6-13 h on one H100).
#   bash recipes/librispeech/run.sh [--stage N] [--stop-stage M] [--model ID_OR_DIR]
#        [--splits a,b,...] [--train-split S] [--dev-split S] [--test-splits a,b]
#        [--mirror URL] [--data DIR] [--exp DIR] [--conf TOML] [--override section.key=value]...
# Stages (each leaves a .done marker under the exp folder, holding its wall time, and is skipped
# when re-run; delete the marker to redo a stage):
#   1. download and verify the LibriSpeech splits (--splits, or $LIBRISPEECH_SPLITS; default
#      train-clean-100,dev-clean,test-clean,test-other) into <data>; --mirror or $ASR_SFT_MIRROR
#      replaces the OpenSLR base URL, $ASR_SFT_LIBRISPEECH_CHECKSUMS a mirror's own digests
#   2. prepare: one manifest per split under <data>/manifests
#   3. fine-tune (--conf, default conf/wav2vec2_base_100h.toml: facebook/wav2vec2-base with a new
#      character vocabulary and CTC head; --model replaces the config's model) into <exp>/train;
#      --override adds config overrides
#   4. decode test-clean and test-other with the best (dev-clean WER) checkpoint and score them
#      (the config's train.eval_normalizer) into <exp>/decode/<split>; for Whisper also the
#      unadapted model into <exp>/zero_shot/<split>, the row the published figures compare with
#   5. write <exp>/report.md: resolved config, steps, times, WER vs the published numbers
# Example (a quick smoke run on a GPU): bash recipes/librispeech/run.sh --override train.max_steps=20
#   bash recipes/librispeech/run.sh --conf recipes/librispeech/conf/whisper_100h.toml --exp exp/librispeech_whisper
set -euo pipefail
cd "$(dirname "$0")/../.."

stage=1
stop_stage=100
splits=${LIBRISPEECH_SPLITS:-train-clean-100,dev-clean,test-clean,test-other}
train_split=train-clean-100
dev_split=dev-clean
test_splits=test-clean,test-other
model=  # empty: the config's model.name_or_path
mirror=
data=data/librispeech
exp=exp/librispeech
conf=recipes/librispeech/conf/wav2vec2_base_100h.toml
overrides=()
while [ $# -gt 0 ]; do
  case "$1" in
    --stage) stage=$2; shift 2 ;;
    --stop-stage) stop_stage=$2; shift 2 ;;
    --splits) splits=$2; shift 2 ;;
    --train-split) train_split=$2; shift 2 ;;
    --dev-split) dev_split=$2; shift 2 ;;
    --test-splits) test_splits=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --mirror) mirror=$2; shift 2 ;;
    --data) data=$2; shift 2 ;;
    --exp) exp=$2; shift 2 ;;
    --conf) conf=$2; shift 2 ;;
    --override) overrides+=("$2"); shift 2 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
mkdir -p "$exp"

source recipes/stages.sh
model_override=(${model:+"model.name_or_path=$model"})
# The family, the model it starts from and the normaliser, as the resolved config says.
read -r family base normalizer < <(python -c "import sys
from asr_sft.training.config import load_config
c = load_config(sys.argv[1], sys.argv[2:])
print(c.model.type, c.model.name_or_path, c.train.eval_normalizer)" "$conf" \
  ${model_override[@]+"${model_override[@]}"} ${overrides[@]+"${overrides[@]}"})
[ -n "${normalizer:-}" ] || { echo "$conf: cannot read the config (see above)" >&2; exit 2; }

download() {
  asr-sft download librispeech --splits "$splits" --dest "$data" ${mirror:+--mirror "$mirror"}
}
run_stage 1 download download

run_stage 2 prepare asr-sft prepare librispeech --root "$data" --out "$data/manifests" --splits "$splits"

finetune() {
  # The recipe's paths come before --override, so an override can still replace any of them.
  asr-sft train --config "$conf" \
    data.train_manifest="$data/manifests/$train_split.jsonl" \
    data.dev_manifest="$data/manifests/$dev_split.jsonl" \
    train.output_dir="$exp/train" ${model_override[@]+"${model_override[@]}"} \
    ${overrides[@]+"${overrides[@]}"}
}
run_stage 3 train finetune

decode_and_score() {
  local best t
  best=$exp/train/checkpoints/$(cat "$exp/train/checkpoints/best")
  for t in ${test_splits//,/ }; do
    decode_one "$best" "$t" "$exp/decode/$t"
    if [ "$family" = whisper ]; then decode_one "$base" "$t" "$exp/zero_shot/$t"; fi
  done
}
decode_one() {  # decode_one MODEL SPLIT OUT
  asr-sft decode --model "$1" --manifest "$data/manifests/$2.jsonl" --out "$3" \
    --batch-size 32 --max-batch-seconds 400
  asr-sft score --hyps "$3/hyps.jsonl" --normalizer "$normalizer" --out "$3" --name "$2"
}
run_stage 4 decode decode_and_score

run_stage 5 report python recipes/librispeech/report.py --exp "$exp" \
  --conf "$conf" --test-splits "$test_splits" ${overrides[@]+"${overrides[@]/#/--override=}"}
echo "librispeech recipe finished: report in $exp/report.md"
