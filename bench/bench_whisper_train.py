"""Benchmark Whisper training throughput on the CPU: full fine-tune, LoRA and a frozen encoder,
each with 30 s windows and with variable-length windows, as ratios in one run.

    OMP_NUM_THREADS=2 python bench/bench_whisper_train.py                 # builtin:whisper-tiny.en
    python bench/bench_whisper_train.py --model random                    # tiny.en's shape, random

Every setup trains the same model (`builtin:whisper-tiny.en`: the real weights, when the
`whisper` extra is installed; else a random model of whisper-tiny's shape, d_model 384, 4+4
layers, 6 heads) through the family interface the training loop uses (whisper.load, collate,
loss, trainable_parameters) with AdamW, on the same batch of real clips
(../shared/data/real-clips, 1.8-11 s): `--warmup` untimed optimizer steps, then `--steps` timed
ones (forward, backward, optimizer). The setups take their steps in turn (round-robin), so load
from other processes on the machine slows them alike; each one's throughput is utterances per
second of its fastest step (the least disturbed by other processes; the median is printed too),
and ratios are against the full fine-tune with 30 s windows. Audio
loading and collating are outside the timing (the loop does them in background threads).
"""

from __future__ import annotations

import argparse
import csv
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from asr_sft.data.features import load_row
from asr_sft.data.manifest import make_row
from asr_sft.errors import AsrSftError
from asr_sft.models import whisper as wh

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
CLIPS = SHARED / "real-clips" / "transcripts.tsv"
TOKENIZER = SHARED / "whisper-assets" / "hf-tokenizer"
SETUPS = {  # name -> WhisperOptions fields
    "full": {},
    "lora r=8": dict(lora_rank=8, lora_alpha=16.0, lora_dropout=0.0),
    "frozen encoder": dict(freeze_encoder=True),
}


def read_clips(batch: int) -> list[dict]:
    """The first `batch` clips of real-clips (path, duration, ..., transcript) as manifest rows."""
    rows = []
    with CLIPS.open(encoding="utf-8") as f:
        for record in csv.DictReader(f, delimiter="\t"):
            rows.append(make_row(id=f"clip{len(rows)}", audio_filepath=str(SHARED / "real-clips" / record["path"]),
                                 duration=float(record["duration_s"]), text=record["text"]))
    return rows[:batch]


def base_model(name: str, tmp: Path) -> str:
    if name != "random":
        return name
    return str(wh.init_whisper_model(tmp / "whisper-tiny-shape", "whisper-tiny", tokenizer_dir=TOKENIZER, seed=0))


class Setup:
    """One configuration, ready to step: model, optimizer and its collated batch."""

    def __init__(self, options: wh.WhisperOptions, rows: list[dict]):
        self.model, processor = wh.load(options, [r["text"] for r in rows])
        self.params = wh.trainable_parameters(self.model)
        self.optimizer = torch.optim.AdamW(self.params, lr=1e-5)
        self.batch = wh.collate(processor, rows, [load_row(r) for r in rows])
        self.utterances, self.times = len(rows), []
        self.model.train()

    def step(self, timed: bool) -> None:
        start = time.perf_counter()
        loss, _ = wh.loss(self.model, dict(self.batch))
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if timed:
            self.times.append(time.perf_counter() - start)

    def rate(self) -> float:
        """Utterances per second of the fastest timed step."""
        return self.utterances / min(self.times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="builtin:whisper-tiny.en",
                        help="model to train ('random': a random model of whisper-tiny's shape)")
    parser.add_argument("--batch", type=int, default=4, help="utterances per batch (real clips, in file order)")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = read_clips(args.batch)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            name = base_model(args.model, Path(tmp))
            setups = {}
            for setup, fields in SETUPS.items():
                for variable in (False, True):
                    options = replace(wh.WhisperOptions(name_or_path=name, dropout=0.0), variable_length=variable,
                                      **fields)
                    setups[setup, variable] = Setup(options, rows)
            for i in range(args.warmup + args.steps):
                for each in setups.values():
                    each.step(timed=i >= args.warmup)
        except AsrSftError as err:
            raise SystemExit(f"bench_whisper_train: {err}")
    audio = sum(r["duration"] for r in rows)
    print(f"model {args.model}; batch {len(rows)} real clips ({audio:.1f} s of audio, longest "
          f"{max(r['duration'] for r in rows):.1f} s); {args.steps} timed steps after {args.warmup}; "
          f"{args.threads} threads; setups stepped in turn")
    print("| setup | window | mel frames | trainable params | step s (fastest / median) | utterances/s | vs full, 30 s |")
    print("|---|---|---|---|---|---|---|")
    reference = setups["full", False].rate()
    for (setup, variable), each in setups.items():
        window, frames = "variable" if variable else "30 s", each.batch["input_features"].shape[-1]
        params = sum(p.numel() for p in each.params)
        steps = f"{min(each.times):.2f} / {statistics.median(each.times):.2f}"
        print(f"| {setup} | {window} | {frames} | {params / 1e6:.2f} M | {steps} | {each.rate():.2f} | "
              f"{each.rate() / reference:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
