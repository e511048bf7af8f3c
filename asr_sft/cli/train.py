"""The train subcommand."""

from __future__ import annotations

from pathlib import Path

from asr_sft.cli.common import parser_kwargs


# --- train ----------------------------------------------------------------------------------------
def _add_train(sub) -> None:
    p = sub.add_parser(
        "train",
        help="fine-tune a CTC model (resumes from the latest checkpoint in train.output_dir)",
        **parser_kwargs(
            "asr-sft train --config recipes/librispeech/conf/wav2vec2_base_100h.toml "
            "train.output_dir=exp/w2v optim.lr=1e-4\n"
            "  accelerate launch --num_processes 2 -m asr_sft.cli train --config X.toml   (DDP)"
        ),
    )
    p.add_argument("--config", type=Path, default=None, help="TOML config (see asr_sft/config.py)")
    p.add_argument("overrides", nargs="*", metavar="section.key=value",
                   help="override single config values; unknown keys are rejected")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("--resume-changed", action="store_true",
                   help="continue the run in train.output_dir even though its data or settings changed "
                        "(same as train.resume_changed=true)")
    p.set_defaults(func=_run_train)


def _run_train(args) -> int:
    import json
    import logging

    from asr_sft.training.config import config_to_dict, load_config

    overrides = list(args.overrides) + (["train.resume_changed=true"] if args.resume_changed else [])
    config = load_config(args.config, overrides)
    if args.print_config:
        print(json.dumps(config_to_dict(config), indent=2))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from asr_sft.training.loop import train

    result = train(config)
    if result.stopped_by is not None:  # SIGINT/SIGTERM: a checkpoint was saved; 128 + N, as the shell says
        import signal

        print(f"stopped by {signal.Signals(result.stopped_by).name} after {result.steps} steps; checkpoint "
              f"{result.last_checkpoint}; run the same command again to resume")
        return 128 + result.stopped_by
    print(f"trained {result.steps} steps; best dev WER {result.best_wer:.2%} at {result.best_checkpoint}")
    return 0


SUBCOMMANDS = [_add_train]
