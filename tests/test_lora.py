"""LoRA (asr_sft.models.lora) for every family: only the updates train, adapters save apart from
the base and load back onto it exactly, merging gives an ordinary checkpoint with the same outputs."""

import pytest
import torch

from asr_sft.cli import main
from asr_sft.errors import ModelError
from asr_sft.evaluation.decode import DecodeOptions, load_model
from asr_sft.models import get_family, lora, model_family, whisper as wh
from asr_sft.training.config import ConfigError, load_config

from _fixtures_models import CLIPS, WHISPER_TOKENIZER, tiny_ctc_dir  # noqa: F401 (fixtures are used by name)

TEXTS = [text for _, text in CLIPS]
WAVES = [0.1 * torch.randn(12000, generator=torch.Generator().manual_seed(i)) for i in range(2)]


@pytest.fixture(scope="module")
def short_whisper_dir(tmp_path_factory):
    return wh.init_whisper_model(tmp_path_factory.mktemp("lora_whisper") / "model", "tiny",
                                 tokenizer_dir=WHISPER_TOKENIZER, seed=0, max_target_positions=16)


def _options(family: str, base, *extra: str):
    return load_config(None, [f"model.type={family}", f"model.name_or_path={base}", "model.lora_rank=4",
                              *extra]).model


def _outputs(model, processor, family: str) -> torch.Tensor:
    """Logits of a fixed batch in eval mode (teacher-forced for seq2seq Whisper)."""
    batch = get_family(family).collate(processor, [{"text": "has never been"}, {"text": "in being"}], WAVES)
    batch.pop("sample_lengths", None)
    model.eval()
    with torch.no_grad():
        return model(**batch).logits


def _perturb(model) -> None:
    """LoRA B starts at zero (an update of 0); give every trainable tensor a random value."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.copy_(0.05 * torch.randn(p.shape, generator=generator))


@pytest.mark.parametrize("family, extra", [("ctc", ["model.new_vocab=true"]), ("whisper", ["model.variable_length=true"]),
                                           ("whisper_ctc", [])])
def test_adapter_round_trip_and_merge(family, extra, tiny_ctc_dir, short_whisper_dir, tmp_path):
    base = tiny_ctc_dir if family == "ctc" else short_whisper_dir
    model, processor = get_family(family).load(_options(family, base, *extra), TEXTS)
    assert lora.is_lora(model)
    before = _outputs(model, processor, family)
    _perturb(model)
    expected = _outputs(model, processor, family)
    assert not torch.allclose(before, expected, atol=1e-3)  # the adapter changes the outputs
    folder = tmp_path / "adapter"
    lora.save_trained(model, folder)
    processor.save_pretrained(folder)
    assert (folder / lora.ADAPTER_WEIGHTS).is_file() and (folder / "config.json").is_file()
    assert not (folder / "model.safetensors").exists() and lora.is_adapter_dir(folder)
    assert model_family(str(folder)) == family and lora.adapter_base(folder) == str(base.resolve())
    options = DecodeOptions(device="cpu", progress=False)
    loaded, loaded_processor = load_model(folder, options)
    assert torch.equal(_outputs(loaded, loaded_processor, family), expected)
    merged_dir = tmp_path / "merged"
    assert main(["merge-adapter", "--adapter", str(folder), "--out", str(merged_dir)]) == 0
    assert (merged_dir / "model.safetensors").is_file() and not (merged_dir / lora.ADAPTER_CONFIG).exists()
    merged, merged_processor = load_model(merged_dir, options)
    assert not lora.is_lora(merged)
    assert torch.allclose(_outputs(merged, merged_processor, family), expected, atol=1e-5)
    # The adapter is small next to the model it adapts.
    size = (folder / lora.ADAPTER_WEIGHTS).stat().st_size
    assert size < 0.5 * (merged_dir / "model.safetensors").stat().st_size


@pytest.mark.parametrize("family, whole", [("ctc", "lm_head"), ("whisper", None), ("whisper_ctc", "ctc_head")])
def test_only_lora_updates_and_the_new_head_train(family, whole, tiny_ctc_dir, short_whisper_dir):
    base = tiny_ctc_dir if family == "ctc" else short_whisper_dir
    model, _ = get_family(family).load(_options(family, base, "model.lora_targets=q_proj,v_proj"), TEXTS)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or (whole and f"{whole}.modules_to_save" in n) for n in trainable)
    assert all(n.endswith(("q_proj.lora_A.default.weight", "q_proj.lora_B.default.weight",
                           "v_proj.lora_A.default.weight", "v_proj.lora_B.default.weight")) or "modules_to_save" in n
               for n in trainable)
    assert {id(p) for p in get_family(family).trainable_parameters(model)} == \
        {id(p) for p in model.parameters() if p.requires_grad}
    if family == "whisper":  # freeze_encoder also holds the encoder's updates
        frozen, _ = get_family(family).load(_options(family, base, "model.freeze_encoder=true"), TEXTS)
        names = [n for n, p in frozen.named_parameters() if p.requires_grad]
        assert names and not any(".encoder." in n for n in names)


def test_lora_errors_are_clear(short_whisper_dir, tmp_path):
    with pytest.raises(ModelError, match="lora_targets='nothing_here'"):
        get_family("whisper").load(_options("whisper", short_whisper_dir, "model.lora_targets=nothing_here"), TEXTS)
    model, processor = get_family("whisper").load(_options("whisper", short_whisper_dir), TEXTS)
    lora.save_trained(model, tmp_path / "adapter")
    processor.save_pretrained(tmp_path / "adapter")
    with pytest.raises(ModelError, match="merge it into its base first"):
        get_family("whisper").load(_options("whisper", tmp_path / "adapter"), TEXTS)
    with pytest.raises(ModelError, match="not a LoRA adapter"):
        lora.merge_adapter(short_whisper_dir, tmp_path / "merged")
    assert main(["merge-adapter", "--adapter", str(short_whisper_dir), "--out", str(tmp_path / "merged")]) == 2
    assert not (tmp_path / "merged").exists()
    for bad in ("model.lora_rank=-1", "model.lora_dropout=1.0", "model.lora_alpha=0"):
        with pytest.raises(ConfigError, match=bad.split("=")[0]):
            load_config(None, ["model.type=whisper", bad])
