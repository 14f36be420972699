"""Benchmark models: the planner's built-in Llama shapes materialised with random weights (memory and
speed do not depend on the values) and a byte-level BPE tokenizer trained on the benchmark text."""

from __future__ import annotations

from pathlib import Path

from ..planner.shapes import is_shape_name, shape_config

TOKENIZER_VOCAB = 8000


def materialize(name: str, folder: Path, corpus: list[str], *, device: str = "cpu", seed: int = 0) -> Path:
    """Write `name` (a built-in shape) to `folder` with random weights and a tokenizer; reuse it if present."""
    if (folder / "config.json").exists():
        return folder
    import torch
    from transformers import AutoModelForCausalLM

    tokenizer = train_tokenizer(corpus)
    config = shape_config(name)
    config.vocab_size = max(config.vocab_size, len(tokenizer))
    config.bos_token_id, config.eos_token_id = tokenizer.bos_token_id, tokenizer.eos_token_id
    torch.manual_seed(seed)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    del model
    return folder


def train_tokenizer(corpus: list[str], vocab_size: int = TOKENIZER_VOCAB):
    """A byte-level BPE tokenizer with Llama-style <s>/</s> specials, trained on `corpus`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<unk>", "<s>", "</s>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", bos)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>"
    )


def needs_materializing(name_or_path: str) -> bool:
    return is_shape_name(name_or_path)


def model_folder(root: Path, name: str) -> Path:
    return root / "models" / name.removeprefix("shape:")
