#!/usr/bin/env bash
# Per-accent adaptation (`make accent-adapt`): measure the WER gap between accent groups, close it
# group by group with each adaptation strategy, and show the price (forgetting on real human
# speech, adapter size, training time). Offline, on a CPU, with builtin:whisper-tiny.en by default.
#   bash recipes/accent_adaptation/run.sh [--stage N] [--stop-stage M] [--smoke]
# Stages (recipes/stages.sh's --stage/--stop-stage; every command leaves a .done marker under $EXP,
# in run_stage's format, and is skipped when re-run; delete a marker to redo its command):
#   1 prepare   espeak-ng accents (ACCENTS), FSDD's accented speakers (FSDD_ACCENTS) as real groups,
#               and the general set: the shared real clips + FSDD's American test speakers
#   2 split     speaker-disjoint train/dev/test per group (asr-sft split), per-group manifests
#   3 baseline  the base model on every group's test set and the general set (asr-sft bench)
#   4 adapt     every strategy in STRATEGIES, each a config of the one training loop (conf/):
#                 lora    a LoRA adapter per group (conf/lora.toml)
#                 full    a full fine-tune per group (conf/full.toml)
#                 pooled  one full fine-tune on every group's data (conf/pooled.toml)
#                 pseudo  TEACHER transcribes each group's training audio, the confident transcripts
#                         are kept (asr-sft pseudo-label) and train a LoRA adapter (conf/pseudo.toml)
#               and with CAPS (e.g. "30s,1m"), a LoRA adapter per group on each nested training cap
#   5 evaluate  routed decodes (each utterance with its group's adapter or model; other groups,
#               the general set among them, with the base), then every model and routed system on
#               every test set with paired tests (asr-sft bench)
#               and, with NOISE_SNRS, the base and pooled models on the general set at each SNR
#   6 report    $EXP/report/report.{md,json} and PNGs (report.py)
# Settings come from the environment (defaults below): MODEL, CONF, TEACHER, ACCENTS, FSDD_ACCENTS,
# SPEAKERS, UTTS, FRACTIONS, STRATEGIES, CAPS, OVERRIDES (section.key=value for every training
# run, e.g. augment.* for noise and speed augmentation), PSEUDO_FLAGS, DECODE, DEVICE, DATA, EXP,
# NOISE_SNRS and NOISE; for a real corpus POOL (its manifests, instead of synthesis), TEXT_OVERLAP,
# MIN_SPEAKERS and ADAPT_GROUPS (which groups to adapt).
# --smoke: a tiny run (2 groups of 2 speakers, 2 steps, random tiny models unless MODEL/TEACHER are
# given) that checks the plumbing, not the numbers.
set -euo pipefail
cd "$(dirname "$0")/../.."
recipe=recipes/accent_adaptation
shared=${SHARED_DATA:-../shared/data}

smoke=0
args=()
for a in "$@"; do
  if [ "$a" = --smoke ]; then smoke=1; else args+=("$a"); fi
done
source recipes/stages.sh
parse_stage_args "${args[@]+"${args[@]}"}"

if [ "$smoke" = 1 ]; then
  ACCENTS=${ACCENTS:-en-gb-scotland}
  FSDD_ACCENTS=${FSDD_ACCENTS-DEU/German}
  SPEAKERS=${SPEAKERS:-2}
  UTTS=${UTTS:-3}
  FSDD_PER_SPEAKER=${FSDD_PER_SPEAKER:-3}
  FRACTIONS=${FRACTIONS:-train=0.5,test=0.5}
  GENERAL_LIMIT=${GENERAL_LIMIT:-4}
  STRATEGIES=${STRATEGIES:-lora pooled pseudo}
  CAPS=${CAPS-}
  OVERRIDES=${OVERRIDES:-train.max_steps=2 optim.warmup_steps=1 data.dev_max_utterances=1}
  SYNTH_WORKERS=${SYNTH_WORKERS:-1}
  PLOTS=${PLOTS:-0}  # the benchmarks' own plots (report.py still draws its own)
  DECODE=${DECODE:---no-fallback --max-new-tokens 8 --batch-size 8}
  PSEUDO_FLAGS=${PSEUDO_FLAGS:---min-avg-logprob none --max-compression-ratio none --max-words-per-second none}
  RESAMPLES=${RESAMPLES:-50}
  DATA=${DATA:-data/accent_adaptation_smoke}
  EXP=${EXP:-exp/accent_adaptation_smoke}
fi
MODEL=${MODEL:-builtin:whisper-tiny.en}
CONF=${CONF:-$recipe/conf}  # the strategies' configs; $recipe/conf_ctc for a wav2vec2 CTC MODEL
TEACHER=${TEACHER:-builtin:whisper-base}
ACCENTS=${ACCENTS:-en-us en-gb-scotland en-029}  # espeak-ng voices; en-us-nyc, en-gb-x-rp, ... also work
FSDD_ACCENTS=${FSDD_ACCENTS-DEU/German}  # FSDD accents with 2+ speakers as real groups ("" for none)
SPEAKERS=${SPEAKERS:-6}  # synthetic speakers per accent
UTTS=${UTTS:-10}  # utterances per synthetic speaker
FSDD_PER_SPEAKER=${FSDD_PER_SPEAKER:-20}
FRACTIONS=${FRACTIONS:-train=0.5,dev=0.17,test=0.33}  # of each group's speakers: 6 -> 3 / 1 / 2
GENERAL_PER_SPEAKER=${GENERAL_PER_SPEAKER:-5}  # FSDD American test recordings per speaker
GENERAL_LIMIT=${GENERAL_LIMIT:-0}
STRATEGIES=${STRATEGIES:-lora pooled}  # of: lora full pooled pseudo
CAPS=${CAPS-}  # nested training caps per group for the data-efficiency curve, e.g. "20s,1m"
OVERRIDES=${OVERRIDES-}
PSEUDO_FLAGS=${PSEUDO_FLAGS:---min-avg-logprob -0.5 --max-compression-ratio 2.4 --max-words-per-second 5}
DEVICE=${DEVICE:-auto}
DECODE=${DECODE:---no-fallback --max-new-tokens 96 --batch-size 8}
RESAMPLES=${RESAMPLES:-1000}
POOL=${POOL-}  # manifests of a real accented corpus to split instead of synthesizing (see README)
TEXT_OVERLAP=${TEXT_OVERLAP:-allow}  # asr-sft split --text-overlap
MIN_SPEAKERS=${MIN_SPEAKERS:-1}  # per group and split (asr-sft split --min-speakers)
ADAPT_GROUPS=${ADAPT_GROUPS-}  # the groups to adapt (default: every group the split made)
SYNTH_WORKERS=${SYNTH_WORKERS:-2}
PLOTS=${PLOTS:-1}
NOISE_SNRS=${NOISE_SNRS-}  # e.g. "20,10,5,0": the general set with NOISE at each SNR, benchmarked in stage 5
NOISE=${NOISE:-pink}  # white, pink, babble or noise files (asr-sft noisy --noise)
data=${DATA:-data/accent_adaptation}
exp=${EXP:-exp/accent_adaptation}
split=$data/split
bg=$data/groups
mkdir -p "$exp"
SECONDS=0
read -r -a overrides <<< "$OVERRIDES"
read -r -a decode <<< "$DECODE --device $DEVICE"
read -r -a pseudo_flags <<< "$PSEUDO_FLAGS"

# The smoke run's stand-in for real models: a tiny random Whisper with a 40-token decoder context
# (room for a synthetic sentence; an untrained model's runaway output stops there), seconds to build
# and to train.
if [ "$smoke" = 1 ] && [ "$MODEL" = builtin:whisper-tiny.en ]; then
  [ -f "$exp/models/student/config.json" ] || python -c "import sys; from asr_sft.models.whisper import \
init_whisper_model as init; init(sys.argv[1], 'tiny', tokenizer_dir=sys.argv[2], max_target_positions=40, \
overwrite=True)" "$exp/models/student" "$shared/whisper-assets/hf-tokenizer"
  MODEL=$exp/models/student
  if [ "$TEACHER" = builtin:whisper-base ]; then TEACHER=$MODEL; fi
fi

# Each stage lists its commands as jobs (each job with its own .done marker, as run_stage gives) and
# runs them in one Python process (jobs.py): every asr-sft process spends 3-7 s of CPU on imports,
# which would otherwise be most of a short CPU run. The commands are the ones a person would type.
jobs_file=
begin_jobs() { jobs_file=$exp/.jobs.stage$1; mkdir -p "$exp"; : > "$jobs_file"; }
job() {  # job NAME [if-exists PATH] asr-sft ARGS...
  local name=$1 condition=""
  shift
  if [ "$1" = if-exists ]; then condition="if-exists"$'\t'"$2"$'\t'; shift 2; fi
  printf '%s\t%s%s\n' "$name" "$condition" "$(printf '%q ' "$@")" >> "$jobs_file"
}
run_jobs() {  # run_jobs N: the jobs listed since begin_jobs N, if N is within --stage/--stop-stage;
  # the later stages are planned from this one's outputs, so after --stop-stage the run ends here
  if [ "$1" -ge "$stage" ] && [ "$1" -le "$stop_stage" ]; then python $recipe/jobs.py "$exp" "$1" "$jobs_file"; fi
  if [ "$1" -ge "$stop_stage" ]; then echo "stopped after stage $1 in ${SECONDS}s"; exit 0; fi
}

begin_jobs 1
if [ -z "$POOL" ]; then
  job synth asr-sft synth --out "$data/synth" --accents "${ACCENTS// /,}" --speakers-per-accent "$SPEAKERS" \
    --utterances-per-speaker "$UTTS" --splits train=1.0 --seed 31 --sentence-seed 31 --num-workers "$SYNTH_WORKERS"
  rows=("$data/synth/manifests/train.jsonl")
else
  read -r -a rows <<< "$POOL"
fi
job fsdd asr-sft prepare fsdd --root "$shared/fsdd" --out "$data/fsdd"
job real-clips asr-sft prepare folder --table "$shared/real-clips/transcripts.tsv" --audio-root "$shared/real-clips" \
  --out "$data/real_clips.jsonl" --corpus real-clips
job groups python $recipe/groups.py prepare --rows "${rows[@]}" \
  --fsdd-train "$data/fsdd/fsdd_train.jsonl" --fsdd-test "$data/fsdd/fsdd_test.jsonl" \
  --fsdd-accents "$FSDD_ACCENTS" --per-speaker "$FSDD_PER_SPEAKER" --clips "$data/real_clips.jsonl" \
  --general-fsdd-accents USA/neutral --general-per-speaker "$GENERAL_PER_SPEAKER" \
  --general-limit "$GENERAL_LIMIT" --pool "$data/pool.jsonl" --general "$data/general.jsonl"
run_jobs 1

# FSDD's speakers all say the same ten words, so train and test share "sentences" (TEXT_OVERLAP=allow,
# counted in split_summary.json); the synthetic sentences are all distinct. L2-ARCTIC: partition.
begin_jobs 2
job split asr-sft split "$data/pool.jsonl" --out "$split" --fractions "$FRACTIONS" --min-speakers "$MIN_SPEAKERS" \
  --text-overlap "$TEXT_OVERLAP" --train-caps "$CAPS" --seed 0
job by-group python $recipe/groups.py by-group --split "$split" --general "$data/general.jsonl" --out "$bg"
if [ -n "$NOISE_SNRS" ]; then
  job noisy asr-sft noisy --manifest "$data/general.jsonl" --snrs "$NOISE_SNRS" --noise "$NOISE" --out "$data/noisy"
fi
run_jobs 2

if [ ! -f "$bg/groups.json" ]; then echo "$bg/groups.json is missing: run stages 1 and 2 first" >&2; exit 1; fi
groups=$(python -c "import json,sys; print(' '.join(json.load(open(sys.argv[1]))['groups']))" "$bg/groups.json")
if [ -n "$ADAPT_GROUPS" ]; then  # adapt only these (test sets stay every group's)
  groups=$(for g in $groups; do if [[ " $ADAPT_GROUPS " == *" $g "* ]]; then echo "$g"; fi; done | xargs)
fi
tested=$(python -c "import json,sys; g=json.load(open(sys.argv[1]))['groups']
print(' '.join(k for k, v in g.items() if v['test']))" "$bg/groups.json")  # groups with test speakers
testsets=()
for g in $tested; do testsets+=(--testset "$g=$bg/$g/test.jsonl"); done
testsets+=(--testset "general=$data/general.jsonl")
# --no-warmup: a warm-up batch per system and test set would only make the RTFx column exact, at
# about a third more decoding.
bench_flags=(--normalizer whisper_en --group-by accent,corpus --resamples "$RESAMPLES" --no-warmup)
if [ "$PLOTS" = 0 ]; then bench_flags+=(--no-plots); fi

begin_jobs 3
job baseline asr-sft bench --system base="$MODEL" "${testsets[@]}" "${bench_flags[@]}" --out "$exp/baseline" \
  "${decode[@]}"
run_jobs 3

train() {  # train NAME CONFIG TRAIN_MANIFEST DEV_MANIFEST OUTPUT_DIR [if-exists PATH]
  job "$1" "${@:6}" asr-sft train --config "$CONF/$2" data.train_manifest="$3" data.dev_manifest="$4" \
    model.name_or_path="$MODEL" train.device="$DEVICE" train.output_dir="$5" "${overrides[@]+"${overrides[@]}"}"
}
begin_jobs 4
for strategy in $STRATEGIES; do
  case $strategy in
    lora|full)
      for g in $groups; do
        train "$strategy-$g" "$strategy.toml" "$bg/$g/train.jsonl" "$bg/$g/dev.jsonl" "$exp/$strategy/$g"
      done ;;
    pooled)
      train pooled pooled.toml "$bg/pooled_train.jsonl" "$bg/pooled_dev.jsonl" "$exp/pooled" ;;
    pseudo)  # the student trains only where the filter kept something (pseudo.jsonl exists)
      for g in $groups; do
        job "pseudo-label-$g" asr-sft pseudo-label --teacher "$TEACHER" --manifest "$bg/$g/train.jsonl" \
          --out "$exp/pseudo_label/$g" "${pseudo_flags[@]}" "${decode[@]}"
        train "pseudo-$g" pseudo.toml "$exp/pseudo_label/$g/pseudo.jsonl" "$bg/$g/dev.jsonl" "$exp/pseudo/$g" \
          if-exists "$exp/pseudo_label/$g/pseudo.jsonl"
      done ;;
    *) echo "unknown strategy $strategy (choose from lora full pooled pseudo)" >&2; exit 2 ;;
  esac
done
for cap in ${CAPS//,/ }; do
  for g in $groups; do
    if [ -f "$bg/$g/train_cap-$cap.jsonl" ]; then
      train "cap$cap-$g" lora.toml "$bg/$g/train_cap-$cap.jsonl" "$bg/$g/dev.jsonl" "$exp/caps/$cap/$g"
    fi
  done
done
run_jobs 4

# route NAME RUNS_DIR [MANIFEST]: each group's utterances through RUNS_DIR/<group>/checkpoints/best,
# the others (the general set) through the base model (LoRA: the adapters' base; full: MODEL).
# Prints the hyps.jsonl it will write, nothing when no group has a model.
route() {
  local name=$1 dir=$2 manifest=${3:-$bg/tests.jsonl} adapters="" g fallback=()
  for g in $groups; do
    if [ -f "$dir/$g/checkpoints/best" ]; then adapters+="${adapters:+,}$g=$dir/$g/checkpoints/best"; fi
  done
  if [ -z "$adapters" ]; then return 0; fi
  if [ "$name" = full ]; then fallback=(--fallback "$MODEL"); fi  # whole models have no base to fall back to
  job "route-$name" asr-sft decode --adapters "$adapters" --route-by accent "${fallback[@]+"${fallback[@]}"}" \
    --manifest "$manifest" --out "$exp/decode/$name" "${decode[@]}"
  echo "$exp/decode/$name/hyps.jsonl"
}
begin_jobs 5
systems=()
adapted=0  # systems besides the base
for t in $tested general; do systems+=(--system "base@$t=$exp/baseline/systems/base/hyps-$t.jsonl"); done
for strategy in $STRATEGIES; do
  if [ "$strategy" = pooled ]; then
    if [ -f "$exp/pooled/checkpoints/best" ]; then
      systems+=(--system "pooled=$exp/pooled/checkpoints/best")
      adapted=1
    fi
    continue
  fi
  hyps=$(route "$strategy" "$exp/$strategy")
  if [ -n "$hyps" ]; then systems+=(--system "$strategy-routed=$hyps"); adapted=1; fi
  for g in $groups; do
    if [ -f "$exp/$strategy/$g/checkpoints/best" ]; then
      systems+=(--system "$strategy-$g=$exp/$strategy/$g/checkpoints/best")
    fi
  done
done
if [ "$adapted" = 1 ]; then
  job bench asr-sft bench "${systems[@]}" "${testsets[@]}" "${bench_flags[@]}" --out "$exp/bench" "${decode[@]}"
fi
if [ -n "$CAPS" ]; then  # the data-efficiency curve: group test sets only
  grouptests=()
  cap_systems=()
  for t in $tested; do
    grouptests+=(--testset "$t=$bg/$t/test.jsonl")
    cap_systems+=(--system "base@$t=$exp/baseline/systems/base/hyps-$t.jsonl")
  done
  for cap in ${CAPS//,/ }; do
    hyps=$(route "cap$cap" "$exp/caps/$cap" "$bg/group_tests.jsonl")
    if [ -n "$hyps" ]; then cap_systems+=(--system "lora-cap$cap=$hyps"); fi
  done
  if [[ " $STRATEGIES " == *" lora "* ]]; then  # all of train: the main benchmark's per-test-set hyps
    for t in $tested; do cap_systems+=(--system "lora-routed@$t=$exp/bench/systems/lora-routed/hyps-$t.jsonl"); done
  fi
  job bench-caps asr-sft bench "${cap_systems[@]}" "${grouptests[@]}" "${bench_flags[@]}" \
    --out "$exp/bench_caps" "${decode[@]}"
fi
if [ -n "$NOISE_SNRS" ]; then  # noise measured as accents are: the same utterances, clean and at each SNR
  noise_sets=(--testset "general=$data/general.jsonl")
  while read -r snr manifest; do noise_sets+=(--testset "general-${snr}dB=$manifest"); done < <(python -c "
import json, sys
for s in json.load(open(sys.argv[1]))['sets']: print(f\"{s['snr_db']:g}\", s['manifest'])" "$data/noisy/noisy_summary.json")
  noise_systems=(--system "base=$MODEL")
  if [ -f "$exp/pooled/checkpoints/best" ]; then noise_systems+=(--system "pooled=$exp/pooled/checkpoints/best"); fi
  job bench-noise asr-sft bench "${noise_systems[@]}" "${noise_sets[@]}" "${bench_flags[@]}" --out "$exp/bench_noise" \
    "${decode[@]}"
fi
run_jobs 5

begin_jobs 6
job report python $recipe/report.py --exp "$exp" --groups "$bg/groups.json" --strategies "$STRATEGIES" \
  --caps "$CAPS" --out "$exp/report"
run_jobs 6
if [ -f "$exp/report/report.md" ]; then sed -n '/^## Per-group WER/,/^## /p' "$exp/report/report.md" | sed '$d'; fi
echo "accent adaptation finished in ${SECONDS}s: report in $exp/report/report.md"
