"""`python -m asr_sft.cli ...` runs the `asr-sft` command line."""

import sys

from asr_sft.cli import main

sys.exit(main())
