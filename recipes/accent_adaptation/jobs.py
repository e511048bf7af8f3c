"""Run one recipe stage's `asr-sft` commands in a single Python process, each with its own stage
marker, exactly as recipes/stages.sh's run_stage would run them one process each.

    python recipes/accent_adaptation/jobs.py EXP STAGE JOBS_FILE

JOBS_FILE holds one job per line: its name, a tab, then the command as shell words (bash's
printf %q): `asr-sft ...`, or `python recipes/<name>/<script>.py ...` (run with runpy, as
`python` would run it); a job may start with `if-exists PATH` (tab-separated, before the
command) to run only when PATH exists when its turn comes (pseudo-labelling may keep nothing).
A job whose marker EXP/.stageSTAGE.NAME.done exists is skipped ("done already"); a finished job
writes the marker in run_stage's format (line 1 "seconds S", line 2 the command), so markers,
reruns and report.py's training times work the same either way. The first failing job stops the
run with its exit status.

Why: every `asr-sft` process spends 3-7 s of CPU importing torch, transformers and peft before it
does anything. A stage of a dozen short CPU trainings or decodes paid that a dozen times; here it
is paid once. Each command goes through asr_sft.cli.main, the same entry point as the shell's.
"""

from __future__ import annotations

import runpy
import shlex
import sys
import time
from pathlib import Path

from asr_sft.cli import main as asr_sft


def read_jobs(path: Path) -> list[tuple[str, str | None, list[str]]]:
    jobs = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split("\t")
        name, condition = parts[0], None
        if len(parts) == 4 and parts[1] == "if-exists":
            condition, command = parts[2], parts[3]
        elif len(parts) == 2:
            command = parts[1]
        else:
            raise SystemExit(f"{path}:{number}: want NAME<TAB>[if-exists<TAB>PATH<TAB>]COMMAND")
        words = shlex.split(command)
        script_job = words[:1] == ["python"] and len(words) > 1 and words[1].startswith("recipes/") \
            and words[1].endswith(".py")
        if not words or not (words[0] == "asr-sft" or script_job):
            raise SystemExit(f"{path}:{number}: only asr-sft and recipe scripts run in-process, got {command[:60]!r}")
        jobs.append((name, condition, words))
    return jobs


def script(argv: list[str]) -> int:
    """A recipe script run as `python SCRIPT ARGS` runs it; its exit status."""
    saved = sys.argv
    sys.argv = list(argv)
    try:
        runpy.run_path(argv[0], run_name="__main__")
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    finally:
        sys.argv = saved
    return 0


def run(exp: Path, stage: int, jobs: list[tuple[str, str | None, list[str]]]) -> int:
    for name, condition, words in jobs:
        marker = exp / f".stage{stage}.{name}.done"
        if marker.is_file():
            print(f"stage {stage} ({name}): done already", flush=True)
            continue
        if condition is not None and not Path(condition).exists():
            print(f"stage {stage} ({name}): skipped, {condition} does not exist", flush=True)
            continue
        print(f"=== stage {stage}: {name}", flush=True)
        start = time.monotonic()
        status = asr_sft(words[1:]) if words[0] == "asr-sft" else script(words[1:])
        if status:
            print(f"stage {stage} ({name}) failed with status {status}: {shlex.join(words)}", file=sys.stderr)
            return status
        exp.mkdir(parents=True, exist_ok=True)
        marker.write_text(f"seconds {time.monotonic() - start:.1f}\n{' '.join(words)}\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    sys.exit(run(Path(sys.argv[1]), int(sys.argv[2]), read_jobs(Path(sys.argv[3]))))
