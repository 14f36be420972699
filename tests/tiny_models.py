"""Tiny models of real architectures, built from configs, with a tokenizer trained here.

Nothing is downloaded: the tokenizer is a byte-level BPE trained on a small corpus written below,
the weights are random (seeded). Used by the test suite and by benchmarks."""

from __future__ import annotations

from pathlib import Path

CORPUS = [
    "The patient was admitted with chest pain and shortness of breath.",
    "The contract may be terminated by either party with thirty days notice.",
    "Please reset my password, I cannot log in to my account.",
    "My card was charged twice for the same transaction yesterday.",
    "The tenant shall pay rent on the first day of each month.",
    "Blood pressure was stable and the patient was discharged home.",
    "Refunds are processed within five business days of the request.",
    "What is the capital of France? The capital of France is Paris.",
    "Summarise the clause: the supplier is liable for late delivery.",
    "Answer: positive. Answer: negative. Answer: neutral.",
    "### Instruction:\n### Input:\n### Response:\n",
    "0 1 2 3 4 5 6 7 8 9 a b c d e f g h i j k l m n o p q r s t u v w x y z",
]
CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def train_tokenizer(kind: str = "llama", vocab_size: int = 400):
    """A real byte-level BPE tokenizer (fast) with the special tokens of the given family."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    if kind == "llama":
        specials = ["<unk>", "<s>", "</s>"]
    else:
        specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>" if kind == "llama" else None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 4, trainer=trainer)
    if kind == "llama":
        bos = tok.token_to_id("<s>")
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)]
        )
        return PreTrainedTokenizerFast(
            tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
        )
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    fast.chat_template = CHATML
    return fast


def build_tiny_causal_lm(kind: str, path: Path, *, hidden: int = 64, layers: int = 2, seed: int = 0) -> Path:
    """Save a tiny Llama or Qwen2 causal LM + tokenizer to ``path`` (safetensors)."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    tokenizer = train_tokenizer(kind)
    common = dict(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    config = (
        LlamaConfig(**common, tie_word_embeddings=False)
        if kind == "llama"
        else Qwen2Config(**common, tie_word_embeddings=True)
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path


def build_tiny_gpt2(path: Path, *, positions: int = 32, seed: int = 0) -> Path:
    """A tiny GPT-2 (learned position embeddings: a sequence longer than ``positions`` fails in its forward)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = train_tokenizer("llama")
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=positions,
        n_embd=64,
        n_layer=2,
        n_head=4,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    path.mkdir(parents=True, exist_ok=True)
    GPT2LMHeadModel(config).save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path


def bert_vocab(texts: list[str], size: int, specials: list[str]) -> dict[str, int]:
    """A WordPiece vocabulary built the same way in every process: the specials, every character (alone and
    as a ``##`` continuation), whole words by frequency, then word beginnings and ``##`` endings (the most
    frequent first, then the longer; ties alphabetical) until ``size``. The tokenizers library's
    WordPiece trainer breaks ties between equally frequent merges by hash order, which is seeded per
    process: the same corpus gave a different vocabulary (``refund`` whole in one session, ``refu ##nd`` in
    the next) and so, with the same seeded weights, a different model in every test session."""
    from collections import Counter

    from tokenizers import normalizers, pre_tokenizers

    normalizer, splitter = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    counts = Counter(w for t in texts for w, _ in splitter.pre_tokenize_str(normalizer.normalize_str(t)))
    chars = sorted({c for word in counts for c in word})
    tokens = [*specials, *chars, *(f"##{c}" for c in chars)]
    tokens += [w for w in sorted(counts, key=lambda w: (-counts[w], w)) if w not in tokens]
    pieces: Counter[str] = Counter()
    for word, n in counts.items():
        for k in range(2, len(word)):
            pieces[word[:k]] += n
            pieces[f"##{word[len(word) - k :]}"] += n
    known = set(tokens)
    tokens += [p for p in sorted(pieces, key=lambda p: (-pieces[p], -len(p), p)) if p not in known]
    return {token: i for i, token in enumerate(tokens[:size])}


def build_tiny_bert(path: Path, *, seed: int = 0) -> Path:
    """A tiny BERT encoder with a WordPiece tokenizer built here (the same in every process)."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    extra = [
        "the <e1>cup</e1> in the <e2>box</e2> 0 1 2 3 4 5 6 7 8 9",  # relation markers tokenize apart
        "a refund",  # whole: the word test_explain's rule rests on
    ]
    tok = Tokenizer(models.WordPiece(bert_vocab(CORPUS + extra, 300, specials), unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.BertProcessing(
        ("[SEP]", tok.token_to_id("[SEP]")), ("[CLS]", tok.token_to_id("[CLS]"))
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    config = BertConfig(
        vocab_size=len(fast),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=256,
    )
    torch.manual_seed(seed)
    path.mkdir(parents=True, exist_ok=True)
    BertModel(config).save_pretrained(path, safe_serialization=True)
    fast.save_pretrained(path)
    return path
