"""Every bad option value, on the command line or in a config, ends in one line naming the option
and its allowed range, exit status 2, never a traceback."""

from __future__ import annotations

import pytest

from asr_sft.cli import main


@pytest.mark.parametrize("override, message", [
    ("model.mask_time_prob=2", "model.mask_time_prob must be in [0, 1], got 2.0"),
    ("model.layerdrop=-0.5", "model.layerdrop must be in [0, 1]"),
    ("model.type=transducer", "unknown model type 'transducer'"),
    ("model.type=whisper", None),  # valid: prints the config
    ("optim.lr=-1e-4", "optim.lr must be > 0, got -0.0001"),
    ("optim.lr=nan", "optim.lr must be > 0, got nan"),
    ("optim.grad_accum=0", "optim.grad_accum must be >= 1, got 0"),
    ("optim.betas=[0.9, 1.5]", "optim.betas[1] must be >= 0 and < 1"),
    ("train.max_steps=0", "train.max_steps must be >= 1, got 0"),
    ("train.eval_every=0", "train.eval_every must be >= 1, got 0"),
    ("data.max_batch_seconds=0", "data.max_batch_seconds must be > 0"),
    ("data.max_duration=0.1", "data.max_duration must be > data.min_duration (0.5)"),
    ("train.precision=fp8", "train.precision must be one of"),
])
def test_bad_config_values_are_one_line(capsys, override, message):
    code = main(["train", "--print-config", override])
    out, err = capsys.readouterr()
    if message is None:
        assert code == 0 and '"type": "whisper"' in out
        return
    assert code == 2 and message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize("flag, value", [("--batch-size", "0"), ("--max-batch-seconds", "-1"),
                                         ("--num-beams", "0"), ("--max-new-tokens", "0")])
def test_bad_decode_flags_exit_2(capsys, tmp_path, flag, value):
    with pytest.raises(SystemExit) as exit_:
        main(["decode", "--model", "m", "--manifest", str(tmp_path / "m.jsonl"), "--out", str(tmp_path),
              flag, value])
    assert exit_.value.code == 2
    assert f"argument {flag}: must be" in capsys.readouterr().err
