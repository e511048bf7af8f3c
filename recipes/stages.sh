# Numbered, idempotent recipe stages (icefall style), sourced by the recipes under recipes/.
# A recipe sets `stage`, `stop_stage` and `exp` (the folder for the markers), then calls
#   run_stage N NAME COMMAND [ARGS...]
# which runs COMMAND when stage <= N <= stop_stage unless a marker says the stage is done, and then
# writes <exp>/.stageN.NAME.done: line 1 "seconds S" (its wall time), line 2 the command. Delete a
# marker to redo its stage. With rerun_on_change=1 a stage also reruns when its command changed.
run_stage() {
  local n=$1 name=$2; shift 2
  local marker="$exp/.stage$n.$name.done"
  if [ "$n" -lt "$stage" ] || [ "$n" -gt "$stop_stage" ]; then return 0; fi
  if [ -f "$marker" ] && { [ "${rerun_on_change:-0}" != 1 ] || [ "$(sed -n 2p "$marker")" = "$*" ]; }; then
    echo "stage $n ($name): done already"
    return 0
  fi
  echo "=== stage $n: $name"
  local start=$SECONDS
  "$@"
  mkdir -p "$exp"
  printf 'seconds %s\n%s\n' "$((SECONDS - start))" "$*" > "$marker"
}

parse_stage_args() {  # for recipes whose only options are --stage N and --stop-stage M
  stage=1
  stop_stage=100
  while [ $# -gt 0 ]; do
    case "$1" in
      --stage) stage=$2; shift 2 ;;
      --stop-stage) stop_stage=$2; shift 2 ;;
      *) echo "unknown option $1 (recipes take --stage N and --stop-stage M)" >&2; exit 2 ;;
    esac
  done
}
