"""The `asr-sft` command line: the only place (with recipes) that parses arguments.

One module per group of subcommands (data, models, train, evaluate), each a list of `_add_<name>`
functions that declare a subcommand's arguments (with an example in the epilog) and point it at a
`_run_<name>` function that calls the library. Library errors (AsrSftError) are printed as one
clear line and exit with status 2, as argparse does for bad flags.
"""

from __future__ import annotations

import argparse
import sys

from asr_sft.cli import data, evaluate, models, train
from asr_sft.errors import AsrSftError

_GROUPS = (data, models, evaluate, train)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asr-sft",
        description="Supervised fine-tuning of speech recognition models.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in _GROUPS:
        for add in group.SUBCOMMANDS:
            add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except AsrSftError as err:
        print(f"asr-sft {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
