"""The whole pipeline, end to end, through the command line, on a tiny synthetic corpus:
synth -> prepare -> validate -> init-model -> train -> decode -> score."""

import json

from asr_sft.cli import main


def test_pipeline_end_to_end(tmp_path, capsys):
    corpus, manifests, exp = tmp_path / "corpus", tmp_path / "manifests", tmp_path / "exp"
    assert main(["synth", "--out", str(corpus), "--accents", "en-us,en-gb-scotland",
                 "--speakers-per-accent", "3", "--utterances-per-speaker", "4",
                 "--splits", "train=1,dev=1,test=1", "--seed", "3"]) == 0
    assert main(["prepare", "librispeech", "--root", str(corpus), "--out", str(manifests)]) == 0
    for split in ("train", "dev", "test"):
        assert main(["validate", str(manifests / f"{split}.jsonl")]) == 0
    rows = [json.loads(line) for line in (manifests / "test.jsonl").read_text().splitlines()]
    assert {r["accent"] for r in rows} == {"en-us", "en-gb-scotland"} and len(rows) == 8
    assert main(["init-model", "--arch", "wav2vec2", "--size", "tiny", "--out", str(exp / "init"),
                 "--vocab-from", str(manifests / "train.jsonl")]) == 0
    assert main(["train", f"data.train_manifest={manifests / 'train.jsonl'}",
                 f"data.dev_manifest={manifests / 'dev.jsonl'}", f"model.name_or_path={exp / 'init'}",
                 f"train.output_dir={exp / 'train'}", "train.max_steps=4", "train.eval_every=2",
                 "optim.warmup_steps=1", "optim.lr=1e-3", "data.max_batch_seconds=10",
                 "model.freeze_feature_encoder=false", "train.tensorboard=false"]) == 0
    best = exp / "train" / "checkpoints" / (exp / "train" / "checkpoints" / "best").read_text().strip()
    assert main(["decode", "--model", str(best), "--manifest", str(manifests / "test.jsonl"),
                 "--out", str(exp / "decode")]) == 0
    hyps = [json.loads(line) for line in (exp / "decode" / "hyps.jsonl").read_text().splitlines()]
    assert [h["id"] for h in hyps] == [r["id"] for r in rows]
    capsys.readouterr()
    assert main(["score", "--hyps", str(exp / "decode" / "hyps.jsonl"), "--normalizer", "librispeech",
                 "--out", str(exp / "decode"), "--name", "test"]) == 0
    assert "WER" in capsys.readouterr().out
    wer = json.loads((exp / "decode" / "wer.json").read_text())
    words = sum(len(r["text"].split()) for r in rows)
    assert wer["ref_words"] == words and wer["errors"] > 0  # a 4-step random model is wrong, honestly
    assert (exp / "decode" / "errs-test.txt").read_text().count("(") > 0
