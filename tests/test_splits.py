"""Speaker-disjoint, sentence-disjoint splits per group with minimum sizes, nested training caps, a
seed, and the `asr-sft split` command."""

import json
import random

import pytest

from asr_sft.cli import main
from asr_sft.data.manifest import read_manifest, write_manifest
from asr_sft.data.splits import (SUMMARY_FILE, SplitOptions, cap_seconds, split_rows, text_key,
                                 write_splits)
from asr_sft.errors import OptionError


def _rows(groups, speakers_per_group, utterances, seconds=6.0, shared_text=False, custom_group=False):
    """Rows for `speakers_per_group` speakers in each group. Text is unique per utterance unless
    shared_text (every speaker reads the same prompts, as in L2-ARCTIC)."""
    rows = []
    for g in groups:
        for s in range(speakers_per_group):
            speaker = f"{g}-spk{s}"
            for u in range(utterances):
                text = f"Prompt number {u}." if shared_text else f"{speaker} says sentence {u}"
                row = {"id": f"{speaker}-{u:03d}", "audio_filepath": f"/nonexistent/{speaker}-{u}.wav",
                       "duration": seconds + 0.5 * (u % 3), "text": text, "speaker": speaker,
                       "accent": None if custom_group else g, "corpus": "t", "split": None,
                       "sampling_rate": 16000}
                if custom_group:
                    row["custom"] = {"l1": g}
                rows.append(row)
    return rows


def _speakers(rows):
    return {r["speaker"] for r in rows}


def test_speaker_disjoint_per_group_with_fractions():
    rows = _rows(["a", "b", "c"], 10, 4)
    splits = split_rows(rows, SplitOptions(seed=3))
    train, dev, test = (splits.rows[s] for s in ("train", "dev", "test"))
    assert not (_speakers(train) & _speakers(dev) or _speakers(train) & _speakers(test) or _speakers(dev) & _speakers(test))
    assert len(train) + len(dev) + len(test) == len(rows)  # nothing lost: unique sentences
    for g in "abc":  # 8 / 1 / 1 speakers of each group
        assert [len({r["speaker"] for r in part if r["accent"] == g}) for part in (train, dev, test)] == [8, 1, 1]
    assert {r["split"] for r in test} == {"test"}
    cell = next(c for c in splits.summary.cells if (c.group, c.split) == ("a", "train"))
    assert (cell.speakers, cell.utterances) == (8, 32)
    assert cell.minutes == pytest.approx(sum(r["duration"] for r in train if r["accent"] == "a") / 60, abs=1e-3)
    assert splits.summary.left_out == ()


def test_same_seed_same_split_whatever_the_order_and_other_seeds_differ():
    rows = _rows(["a", "b"], 12, 3)
    shuffled = rows[:]
    random.Random(7).shuffle(shuffled)
    options = SplitOptions(seed=11, train_caps=("1m",))
    one, two = split_rows(rows, options), split_rows(shuffled, options)
    for split in ("train", "dev", "test"):
        assert sorted(r["id"] for r in one.rows[split]) == sorted(r["id"] for r in two.rows[split])
    assert sorted(r["id"] for r in one.caps["1m"]) == sorted(r["id"] for r in two.caps["1m"])
    assert one.summary.cells == two.summary.cells
    tests = {frozenset(_speakers(split_rows(rows, SplitOptions(seed=s)).rows["test"])) for s in range(6)}
    assert len(tests) > 1


def test_groups_below_the_minimum_are_left_out_and_reported():
    rows = _rows(["big"], 6, 3) + _rows(["two"], 2, 3) + _rows(["one"], 1, 3)
    splits = split_rows(rows, SplitOptions(min_speakers=(("train", 1), ("dev", 1), ("test", 1))))
    by = {(c.group, c.split): c.speakers for c in splits.summary.cells}
    assert (by["two", "test"], by["two", "dev"], by["two", "train"]) == (1, 0, 1)  # dev would empty train
    assert (by["one", "test"], by["one", "dev"], by["one", "train"]) == (1, 0, 0)
    assert sum(by["big", s] for s in ("train", "dev", "test")) == 6
    left = "\n".join(splits.summary.left_out)
    assert "group 'two': left out of dev (taking its dev speakers would leave train below 1 speaker(s))" in left
    assert "group 'one': left out of train (needs 1 speaker(s); 0 speaker(s) left)" in left


def test_minimum_minutes():
    rows = _rows(["a"], 10, 5, seconds=6.0)  # ~0.55 min per speaker
    splits = split_rows(rows, SplitOptions(fractions=(("train", 0.8), ("test", 0.2)),
                                           min_minutes=(("test", 1.5), ("train", 1.0))))
    test = splits.rows["test"]
    assert sum(r["duration"] for r in test) / 60 >= 1.5 and len(_speakers(test)) == 3
    hopeless = split_rows(rows, SplitOptions(min_minutes=(("test", 100.0),)))
    assert "test" not in hopeless.rows and any("left out of test (needs" in s for s in hopeless.summary.left_out)


def test_drop_train_removes_test_sentences_from_train_and_reports_them():
    rows = _rows(["a"], 10, 4)
    rows[0]["text"] = "A Shared sentence!"  # a0's first line, said again by every other speaker
    for r in rows[4::4]:
        r["text"] = "a shared, sentence"
    splits = split_rows(rows, SplitOptions(seed=1))
    held = {text_key(r["text"]) for s in ("dev", "test") for r in splits.rows[s]}
    assert "a shared sentence" in held
    assert not held & {text_key(r["text"]) for r in splits.rows["train"]}
    assert splits.summary.text_removed["train"] == 8  # the 8 training speakers lost that line
    assert any("8 train utterance(s) removed" in s for s in splits.summary.left_out)
    assert splits.summary.shared_sentences == 0


def test_partition_keeps_both_sides_when_everyone_reads_the_same_prompts():
    """L2-ARCTIC-like: 6 L1s x 4 speakers, all reading the same 40 prompts."""
    rows = _rows(["ar", "zh", "hi", "ko", "es", "vi"], 4, 40, shared_text=True)
    options = SplitOptions(fractions=(("train", 0.5), ("dev", 0.25), ("test", 0.25)), text_overlap="partition")
    splits = split_rows(rows, options)
    train_text = {text_key(r["text"]) for r in splits.rows["train"]}
    held_text = {text_key(r["text"]) for s in ("dev", "test") for r in splits.rows[s]}
    assert train_text and held_text and not train_text & held_text
    assert 12 <= len(train_text) <= 28  # about half of the 40 prompts go each way
    by = {(c.group, c.split): c.speakers for c in splits.summary.cells}
    assert all(by[g, "train"] == 2 and by[g, "dev"] == 1 and by[g, "test"] == 1 for g in ("ar", "vi"))
    # the default would empty train entirely, and says so
    dropped = split_rows(rows, SplitOptions(fractions=options.fractions))
    assert "train" not in dropped.rows
    assert any("left out of train after removing shared sentences" in s for s in dropped.summary.left_out)
    # allow: nothing removed, the overlap counted
    allowed = split_rows(rows, SplitOptions(fractions=options.fractions, text_overlap="allow"))
    assert allowed.summary.shared_sentences == 40 and len(allowed.rows["train"]) == 6 * 2 * 40


def test_caps_are_nested_and_within_budget():
    rows = _rows(["a", "b"], 10, 30, seconds=5.0)  # ~20 min of training speech per group
    splits = split_rows(rows, SplitOptions(train_caps=("10m", "1m", "3m", "1h")))
    caps = {cap: {r["id"] for r in rows_} for cap, rows_ in splits.caps.items()}
    train_ids = {r["id"] for r in splits.rows["train"]}
    assert list(caps) == ["1m", "3m", "10m", "1h"]  # smallest first
    assert caps["1m"] < caps["3m"] < caps["10m"] < caps["1h"] == train_ids
    for cap in ("1m", "3m", "10m"):
        for g in "ab":
            seconds = sum(r["duration"] for r in splits.caps[cap] if r["accent"] == g)
            assert cap_seconds(cap) - 7.0 < seconds <= cap_seconds(cap)  # within one utterance of the budget
            assert len({r["speaker"] for r in splits.caps[cap] if r["accent"] == g}) > 1
    cells = {(c.cap, c.group): c for c in splits.summary.caps}
    assert cells["10m", "a"].reached and not cells["1h", "a"].reached
    assert cells["1h", "a"].utterances == sum(1 for r in splits.rows["train"] if r["accent"] == "a")


def test_group_by_custom_key_and_unusable_rows():
    rows = _rows(["x", "y"], 3, 2, custom_group=True)
    rows.append({**rows[0], "id": "nospeaker", "speaker": None})
    rows.append({**rows[0], "id": "nogroup", "speaker": "lonely", "custom": {}})
    rows.append({**rows[0], "id": "moved", "custom": {"l1": "y"}})  # x-spk0 mostly in group x
    splits = split_rows(rows, SplitOptions(group_by="l1"))
    ids = {r["id"] for part in splits.rows.values() for r in part}
    assert "nospeaker" not in ids and "nogroup" not in ids and "moved" in ids
    left = "\n".join(splits.summary.left_out)
    assert "1 utterance(s) without a speaker" in left and "1 utterance(s) without a 'l1' value" in left
    assert "speaker x-spk0 has rows in groups ['x', 'y']: all of them go with group 'x'" in left
    assert {c.group for c in splits.summary.cells} == {"x", "y"}


def test_option_errors():
    for kwargs, message in [
        ({"fractions": (("train", 0.9), ("dev", 0.1))}, "train and test a share > 0"),
        ({"fractions": (("train", 0.9), ("eval", 0.1))}, r"unknown split\(s\) \['eval'\]"),
        ({"min_speakers": (("test", 0),)}, "min_speakers must be >= 1"),
        ({"text_overlap": "ignore"}, "text_overlap must be one of"),
        ({"train_caps": ("10 minutes",)}, "want a positive number and a unit"),
        ({"train_caps": ("1h", "1h")}, "repeats a cap"),
    ]:
        with pytest.raises(OptionError, match=message):
            SplitOptions(**kwargs)


def test_write_splits_files_summary_and_rerun(tmp_path):
    rows = _rows(["a", "b"], 5, 6)
    first, second = write_manifest(tmp_path / "one.jsonl", rows[:30], check_audio=False), \
        write_manifest(tmp_path / "two.jsonl", rows[30:], check_audio=False)
    out = tmp_path / "split"
    options = SplitOptions(fractions=(("train", 0.6), ("dev", 0.2), ("test", 0.2)), train_caps=("1m", "2m"))
    summary = write_splits([first, second], out, options, check_audio=False)
    assert sorted(summary.manifests) == ["dev", "test", "train", "train_cap-1m", "train_cap-2m"]
    on_disk = json.loads((out / SUMMARY_FILE).read_text())
    assert on_disk == json.loads(json.dumps(summary.to_dict()))
    assert on_disk["format"] == "asr_sft.split_summary/1" and on_disk["options"]["train_caps"] == ["1m", "2m"]
    train = read_manifest(out / "train.jsonl", check_audio=False)
    assert {r["split"] for r in train} == {"train"} and len(train) == 6 * 6
    cap = read_manifest(out / "train_cap-1m.jsonl", check_audio=False)
    assert {r["id"] for r in cap} < {r["id"] for r in train}
    table = summary.format_table()
    assert "total                    train         6         36" in table and "1m       a" in table
    # a rerun with fewer caps removes the files it no longer describes
    write_splits([first, second], out, SplitOptions(fractions=options.fractions, train_caps=("2m",)),
                 check_audio=False)
    assert not (out / "train_cap-1m.jsonl").exists() and (out / "train_cap-2m.jsonl").exists()
    with pytest.raises(Exception, match="ids must be unique across inputs"):
        write_splits([first, first], out, options, check_audio=False)


def test_cli_split(tmp_path, capsys):
    manifest = write_manifest(tmp_path / "all.jsonl", _rows(["a", "b"], 6, 3, shared_text=True), check_audio=False)
    out = tmp_path / "s"
    assert main(["split", str(manifest), "--out", str(out), "--no-check-audio", "--text-overlap", "partition",
                 "--fractions", "train=0.5,dev=0.25,test=0.25", "--min-speakers", "train=2,dev=1,test=1",
                 "--train-caps", "10s", "--seed", "4"]) == 0
    printed = capsys.readouterr().out
    assert "group                    split  speakers utterances   minutes" in printed
    assert "10s      a" in printed and "split_summary.json" in printed
    assert json.loads((out / SUMMARY_FILE).read_text())["options"]["min_speakers"] == [["train", 2], ["dev", 1], ["test", 1]]
    assert main(["split", str(manifest), "--out", str(out), "--fractions", "0.8"]) == 2
    assert "--fractions wants split=N pairs" in capsys.readouterr().err
    assert main(["split", str(manifest), "--out", str(out), "--train-caps", "ten"]) == 2
