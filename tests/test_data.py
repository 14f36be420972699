"""Data preparation: sources, layouts, cleaning, splits, masks, task rows, errors, real-data parses."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from helpers import write_jsonl
from tiny_models import train_tokenizer

from lora_adapt.data import (
    generative_prompt,
    load_rows_from_file,
    load_split_rows,
    prepare_data,
    render_preview,
)
from lora_adapt.errors import DataError
from lora_adapt.recipe.schema import CleaningSpec, DataSpec, SplitSpec, TaskSpec

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is not present")
SFT = TaskSpec()
CLS = TaskSpec(type="classification")
NER = TaskSpec(type="token_classification")
REL = TaskSpec(type="relation_classification", negative_label="Other")
NO_SPLIT = SplitSpec(validation=0, test=0)


@pytest.fixture(scope="module")
def llama_tok():
    """Byte-level BPE, adds <s>, eos </s>, no chat template."""
    return train_tokenizer("llama")


@pytest.fixture(scope="module")
def qwen_tok():
    """Byte-level BPE, ChatML template, eos <|im_end|>."""
    return train_tokenizer("qwen2")


@pytest.fixture(scope="module")
def bert_tok():
    """A WordPiece tokenizer with [CLS]/[SEP], fast (word_ids)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    tok.train_from_iterator(
        ["john smith lives in paris", "the bank charged my card twice"] * 5,
        trainers.WordPieceTrainer(vocab_size=80, special_tokens=specials, show_progress=False),
    )
    tok.post_processor = processors.BertProcessing(("[SEP]", 3), ("[CLS]", 2))
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]"
    )


def rows_of(path: Path, task: TaskSpec = SFT, **spec) -> list[dict]:
    return load_rows_from_file(path, DataSpec(train=path, **spec), task)


# --- sources -----------------------------------------------------------------------------------

CLS_ROWS = [{"text": "good service", "label": "pos"}, {"text": 'bad "service"', "label": "neg"}]


def test_jsonl_json_csv_tsv_parquet_round_trip(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    write_jsonl(tmp_path / "a.jsonl", CLS_ROWS)
    (tmp_path / "b.json").write_text(json.dumps(CLS_ROWS))
    (tmp_path / "c.json").write_text(json.dumps({"data": CLS_ROWS}))
    with (tmp_path / "d.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["text", "label"])
        writer.writeheader()
        writer.writerows(CLS_ROWS)
    (tmp_path / "e.tsv").write_text("".join(f"{r['label']}\t{r['text']}\n" for r in CLS_ROWS))
    pq.write_table(pa.Table.from_pylist(CLS_ROWS), tmp_path / "f.parquet")
    for name in ("a.jsonl", "b.json", "c.json", "d.csv", "f.parquet"):
        assert rows_of(tmp_path / name, CLS) == CLS_ROWS, name
    assert rows_of(tmp_path / "e.tsv", CLS, column_names=("label", "text")) == CLS_ROWS


def test_parquet_and_text_files_are_read_a_batch_at_a_time_with_their_row_numbers(tmp_path, monkeypatch):
    """Parquet is decoded one batch of rows at a time and text one line at a time (a large file is never
    held whole): the rows and their places are those of a whole-file read, and a damaged file is a data
    error naming it."""
    import tracemalloc

    import pyarrow as pa
    import pyarrow.parquet as pq

    from lora_adapt.data import sources

    many = [{"text": f"row {i}", "label": "pos" if i % 3 else "neg"} for i in range(100_000)]
    pq.write_table(pa.Table.from_pylist(many), tmp_path / "many.parquet")
    del many
    tracemalloc.start()
    try:
        first = next(sources.iter_file(tmp_path / "many.parquet", "parquet"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert first["text"] == "row 0" and peak < 8_000_000  # the whole file as Python rows: about 35 MB

    monkeypatch.setattr(sources, "PARQUET_BATCH", 3)
    rows = [{"text": f"row {i}", "label": "pos" if i % 3 else "neg"} for i in range(10)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "f.parquet", row_group_size=4)
    read = list(sources.iter_file(tmp_path / "f.parquet", "parquet"))
    assert [{k: r[k] for k in ("text", "label")} for r in read] == rows
    assert read[7]["_where"].endswith("f.parquet[row 7]")
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not really parquet")
    with pytest.raises(DataError, match="bad.parquet: not a readable parquet file"):
        sources.read_file(tmp_path / "bad.parquet", "parquet")

    # the numbering of str.splitlines over the whole file, form feeds and CRLF included
    text = "one\r\ntwo\x0cthree\n\nfour\nfive"
    (tmp_path / "t.txt").write_bytes(text.encode())
    got = [(r["text"], r["_where"].rsplit(":", 1)[1]) for r in sources.read_file(tmp_path / "t.txt", "text")]
    assert got == [("one\ntwo\nthree", "1"), ("four\nfive", "5")]
    (tmp_path / "l.txt").write_bytes(b"good film|pos\r\n\nbad | film|neg")
    got = sources.read_file(tmp_path / "l.txt", "text", label_delimiter="|")
    assert [(r["text"], r["label"], r["_where"][-1]) for r in got] == [
        ("good film", "pos", "1"),
        ("bad | film", "neg", "3"),
    ]


def test_saved_dataset_directory_and_its_splits(tmp_path):
    import datasets

    datasets.Dataset.from_list(CLS_ROWS).save_to_disk(str(tmp_path / "one"))
    assert rows_of(tmp_path / "one", CLS) == CLS_ROWS
    more = [{"text": f"text {i}", "label": "pos" if i % 2 else "neg"} for i in range(6)]
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_list(more), "test": datasets.Dataset.from_list(CLS_ROWS)}
    ).save_to_disk(str(tmp_path / "dict"))
    raw, stats = load_split_rows(
        DataSpec(path=tmp_path / "dict", split=SplitSpec(validation=0.3, test=0.2)), CLS
    )
    assert raw["test"] == CLS_ROWS and len(raw["validation"]) == 2 and len(raw["train"]) == 4
    assert stats["split"]["carved"] == ["validation"]


def test_text_file_blocks_or_lines(tmp_path):
    (tmp_path / "blocks.txt").write_text("first line\nstill first\n\n\nsecond\n")
    (tmp_path / "lines.txt").write_text("one\ntwo\nthree\n")
    assert [r["text"] for r in rows_of(tmp_path / "blocks.txt")] == ["first line\nstill first", "second"]
    assert [r["text"] for r in rows_of(tmp_path / "lines.txt")] == ["one", "two", "three"]


CONLL = "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\nPeter NNP B-NP B-PER\nBlackburn NNP I-NP I-PER\n"
SEMEVAL = (
    '1\t"The <e1>child</e1> was wrapped into the <e2>cradle</e2>."\nOther\nComment:\n\n'
    '2\t"The <e1>author</e1> of a keygen uses a <e2>disassembler</e2>."\nInstrument-Agency(e2,e1)\nComment: x\n\n'
)


def test_conll_and_semeval_parse_and_auto_detect(tmp_path):
    (tmp_path / "ner.txt").write_text(CONLL)
    rows = rows_of(tmp_path / "ner.txt", NER)
    assert rows == [
        {"tokens": ["EU", "rejects"], "tags": ["B-ORG", "O"]},
        {"tokens": ["Peter", "Blackburn"], "tags": ["B-PER", "I-PER"]},
    ]
    (tmp_path / "re.TXT").write_text(SEMEVAL)
    rel = rows_of(tmp_path / "re.TXT", REL)
    assert [r["label"] for r in rel] == ["Other", "Instrument-Agency(e2,e1)"] and rel[1]["id"] == "2"
    assert "<e1>author</e1>" in rel[1]["text"]


def test_malformed_jsonl_names_file_and_line(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text('{"text": "a"}\n\n{"text": "b"\n')
    with pytest.raises(DataError, match=r"train\.jsonl:3: not valid JSON"):
        rows_of(path)


def test_missing_file_and_missing_column(tmp_path):
    with pytest.raises(DataError, match="not found") as info:
        load_split_rows(DataSpec(train=tmp_path / "nope.jsonl"), SFT)
    assert info.value.hint
    path = write_jsonl(tmp_path / "d.jsonl", [{"body": "x", "category": "a"}])
    with pytest.raises(DataError, match=r"missing column\(s\) \['text', 'label'\].*body, category") as info:
        rows_of(path, CLS)
    assert "data.columns" in info.value.hint
    assert rows_of(path, CLS, columns={"text": "body", "label": "category"}) == [{"text": "x", "label": "a"}]


# --- layouts -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("row", "fmt"),
    [
        ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}, "chat"),
        ({"instruction": "q", "input": "", "output": "a"}, "instruction"),
        ({"prompt": "q", "completion": "a"}, "prompt_completion"),
        ({"text": "q a"}, "completion"),
    ],
)
def test_sft_format_auto_detected(tmp_path, row, fmt):
    _, stats = load_split_rows(DataSpec(train=write_jsonl(tmp_path / "t.jsonl", [row]), split=NO_SPLIT), SFT)
    assert stats["format"] == fmt


def test_prompt_masked_completion_and_eos_trained(tmp_path, llama_tok):
    path = write_jsonl(
        tmp_path / "t.jsonl", [{"prompt": "What is the capital of France?", "completion": " Paris."}]
    )
    data = prepare_data(DataSpec(train=path, split=NO_SPLIT), SFT, llama_tok, head=False)
    ids, mask = data.train[0]["input_ids"], data.train[0]["completion_mask"]
    assert data.layout == "prompt_completion"
    assert ids[0] == llama_tok.bos_token_id and ids[-1] == llama_tok.eos_token_id and mask[-1] == 1
    trained = [t for t, m in zip(ids, mask, strict=True) if m]
    assert llama_tok.decode(trained) == " Paris.</s>"
    assert (
        llama_tok.decode([t for t, m in zip(ids, mask, strict=True) if not m])
        == "<s>What is the capital of France?"
    )
    assert data.stats["eos_trained"] == {"train": 1.0}
    everything = prepare_data(DataSpec(train=path, split=NO_SPLIT, loss_on="all"), SFT, llama_tok, head=False)
    assert set(everything.train[0]["completion_mask"]) == {1}


def test_completion_text_all_trained_with_eos(tmp_path, qwen_tok):
    path = write_jsonl(tmp_path / "t.jsonl", [{"text": "The tenant shall pay rent."}])
    row = prepare_data(DataSpec(train=path, split=NO_SPLIT), SFT, qwen_tok, head=False).train[0]
    assert set(row["completion_mask"]) == {1} and row["input_ids"][-1] == qwen_tok.eos_token_id


CHAT = [
    {"role": "user", "content": "reset my password"},
    {"role": "assistant", "content": "Done."},
    {"role": "user", "content": "thanks"},
    {"role": "assistant", "content": "Welcome."},
]


def trained_text(tokenizer, row) -> str:
    return tokenizer.decode([t for t, m in zip(row["input_ids"], row["completion_mask"], strict=True) if m])


def test_chat_trains_only_assistant_turns(tmp_path, qwen_tok):
    path = write_jsonl(tmp_path / "t.jsonl", [{"messages": CHAT}])
    data = prepare_data(
        DataSpec(train=path, split=NO_SPLIT, system_prompt="Be brief."), SFT, qwen_tok, head=False
    )
    row = data.train[0]
    assert data.layout == "chat"
    assert trained_text(qwen_tok, row) == "Done.<|im_end|>\nWelcome.<|im_end|>\n"
    masked = qwen_tok.decode(
        [t for t, m in zip(row["input_ids"], row["completion_mask"], strict=True) if not m]
    )
    assert masked.startswith("<|im_start|>system\nBe brief.") and "reset my password" in masked
    assert data.stats["eos_trained"]["train"] == 1.0  # eos is <|im_end|>: not appended again
    assert row["input_ids"].count(qwen_tok.eos_token_id) == 5  # one per message, none appended


def test_chat_without_template_needs_a_named_one(tmp_path, llama_tok):
    path = write_jsonl(tmp_path / "t.jsonl", [{"messages": CHAT}])
    with pytest.raises(DataError, match="no chat template") as info:
        prepare_data(DataSpec(train=path, split=NO_SPLIT), SFT, llama_tok, head=False)
    assert "chat_template: chatml" in info.value.hint
    row = prepare_data(
        DataSpec(train=path, split=NO_SPLIT, chat_template="llama3"), SFT, llama_tok, head=False
    ).train[0]
    assert trained_text(llama_tok, row) == "Done.<|eot_id|>Welcome.<|eot_id|></s>"  # eos appended and trained
    assert row["input_ids"][0] == llama_tok.bos_token_id


def test_instruction_alpaca_without_template_chat_with_one(tmp_path, llama_tok, qwen_tok):
    path = write_jsonl(
        tmp_path / "t.jsonl", [{"instruction": "Summarise", "input": "the clause", "output": "Late."}]
    )
    spec = DataSpec(train=path, split=NO_SPLIT)
    plain = prepare_data(spec, SFT, llama_tok, head=False)
    assert plain.layout == "prompt_completion" and trained_text(llama_tok, plain.train[0]) == "Late.</s>"
    assert "### Input:\nthe clause" in llama_tok.decode(plain.train[0]["input_ids"])
    chat = prepare_data(spec, SFT, qwen_tok, head=False)
    assert chat.layout == "chat" and trained_text(qwen_tok, chat.train[0]) == "Late.<|im_end|>\n"
    assert "Summarise\n\nthe clause" in qwen_tok.decode(chat.train[0]["input_ids"])


def test_overlength_drop_versus_truncate(tmp_path, llama_tok):
    rows = [
        {"prompt": "q ", "completion": "short"},
        {"prompt": "q ", "completion": "long " * 40},
        {"prompt": "long " * 40, "completion": "x"},
    ]
    path = write_jsonl(tmp_path / "t.jsonl", rows)
    dropped = prepare_data(
        DataSpec(train=path, split=NO_SPLIT, max_seq_length=16), SFT, llama_tok, head=False
    )
    assert dropped.stats["dropped"]["overlength"] == {"train": 2} and dropped.stats["rows"]["train"] == 1
    spec = DataSpec(
        train=path, split=NO_SPLIT, max_seq_length=16, cleaning=CleaningSpec(overlength="truncate")
    )
    cut = prepare_data(spec, SFT, llama_tok, head=False)
    assert cut.stats["truncated"] == {"train": 1} and cut.stats["dropped"]["completion_truncated"] == {
        "train": 1
    }
    assert len(cut.train[1]["input_ids"]) == 16 and cut.stats["eos_trained"]["train"] == 0.5
    preview = render_preview(cut, llama_tok, n=2)
    assert "truncated: yes" in preview and "[masked]" in preview and "EOS trained: yes" in preview


# --- cleaning and splits -----------------------------------------------------------------------


def test_normalisation_empty_rows_and_duplicates(tmp_path):
    rows = [
        {"text": "Caf\u0065\u0301  au\u00a0lait \n  indented"},
        {"text": "   "},
        {"text": "Café au lait\n  indented"},
        {"text": "other"},
    ]
    raw, stats = load_split_rows(DataSpec(train=write_jsonl(tmp_path / "t.jsonl", rows), split=NO_SPLIT), SFT)
    assert [r["text"] for r in raw["train"]] == ["Café au lait\n  indented", "other"]
    assert stats["normalized"] == {"unicode": 1, "whitespace": 2}
    assert stats["dropped"]["empty"]["train"] == 1 and stats["dropped"]["duplicate"]["train"] == 1
    off = CleaningSpec(
        normalize_unicode=False, normalize_whitespace=False, drop_empty=False, deduplicate=False
    )
    raw, _ = load_split_rows(DataSpec(train=tmp_path / "t.jsonl", split=NO_SPLIT, cleaning=off), SFT)
    assert len(raw["train"]) == 4


def test_duplicate_across_splits_stays_only_in_test(tmp_path):
    shared = {"text": "my card was charged twice", "label": "billing"}
    train = write_jsonl(
        tmp_path / "train.jsonl",
        [shared, {"text": "reset password", "label": "login"}, {"text": "late refund", "label": "billing"}],
    )
    test = write_jsonl(tmp_path / "test.jsonl", [shared, shared, {"text": "cannot log in", "label": "login"}])
    raw, stats = load_split_rows(DataSpec(train=train, test=test, split=SplitSpec(validation=0)), CLS)
    assert shared not in raw["train"] and raw["test"].count(shared) == 2
    assert stats["dropped"]["cross_split"]["train"] == 1


def labelled(n: int) -> list[dict]:
    return [{"text": f"example number {i}", "label": "rare" if i % 10 == 0 else "common"} for i in range(n)]


def test_seeded_split_is_deterministic_and_stratified(tmp_path):
    path = write_jsonl(tmp_path / "all.jsonl", labelled(100))
    spec = DataSpec(path=path, split=SplitSpec(validation=0.2, test=0.1, seed=3))
    first, stats = load_split_rows(spec, CLS)
    again, _ = load_split_rows(spec, CLS)
    other, _ = load_split_rows(DataSpec(path=path, split=SplitSpec(validation=0.2, test=0.1, seed=4)), CLS)
    assert first == again and first["test"] != other["test"]
    assert {k: len(v) for k, v in first.items()} == {"train": 70, "validation": 20, "test": 10}
    assert [r["label"] for r in first["test"]].count("rare") == 1
    assert [r["label"] for r in first["validation"]].count("rare") == 2
    assert stats["split"]["stratified"] and stats["rows_read"] == {"train": 70, "validation": 20, "test": 10}


def test_max_samples_caps_each_split(tmp_path):
    spec = DataSpec(path=write_jsonl(tmp_path / "a.jsonl", labelled(50)), max_samples=5)
    raw, stats = load_split_rows(spec, CLS)
    assert len(raw["train"]) == 5 and stats["dropped"]["max_samples"]["train"] == 35


def test_empty_after_cleaning_says_why(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [{"text": " "}, {"text": "\u00a0"}])
    with pytest.raises(DataError, match=r"empty after cleaning: 2 row\(s\) read, dropped: 2 empty"):
        load_split_rows(DataSpec(train=path, split=NO_SPLIT), SFT)


# --- tasks -------------------------------------------------------------------------------------


def test_misaligned_tags_and_missing_markers_name_the_line(tmp_path):
    (tmp_path / "bad.conll").write_text("EU B-ORG\nrejects\n")
    with pytest.raises(DataError, match=r"bad\.conll:2: token without a tag"):
        rows_of(tmp_path / "bad.conll", NER)
    path = write_jsonl(
        tmp_path / "t.jsonl", [{"tokens": ["a"], "tags": ["O"]}, {"tokens": ["a", "b"], "tags": ["O"]}]
    )
    with pytest.raises(DataError, match=r"t\.jsonl:2: 2 tokens but 1 tags"):
        rows_of(path, NER)
    (tmp_path / "re.txt").write_text(SEMEVAL + '3\t"No <e1>markers</e1> here."\nOther\nComment:\n\n')
    with pytest.raises(DataError, match=r"re\.txt:9: relation sentence lacks entity marker\(s\) <e2>"):
        rows_of(tmp_path / "re.txt", REL)


def test_head_classification_and_tagging(tmp_path, bert_tok):
    train = write_jsonl(
        tmp_path / "c.jsonl",
        [
            {"text": "the bank charged my card", "label": "billing"},
            {"text": "john smith lives in paris", "label": "other"},
        ],
    )
    data = prepare_data(DataSpec(train=train, split=NO_SPLIT), CLS, bert_tok, head=True)
    assert data.labels == ("billing", "other") and data.train["labels"] == [0, 1]
    assert set(data.train.column_names) == {"input_ids", "attention_mask", "labels"}
    (tmp_path / "n.conll").write_text("Johnsmith B-PER\nlives O\nin O\nParis B-LOC\n")
    ner = prepare_data(DataSpec(train=tmp_path / "n.conll", split=NO_SPLIT), NER, bert_tok, head=True)
    assert ner.labels == ("O", "B-LOC", "B-PER")
    ids, labels = ner.train[0]["input_ids"], ner.train[0]["labels"]
    words = bert_tok(["Johnsmith", "lives", "in", "Paris"], is_split_into_words=True).word_ids()
    assert len(ids) > 6 and labels[0] == -100 and labels[-1] == -100
    firsts = [
        y
        for y, w, prev in zip(labels, words, [None, *words[:-1]], strict=True)
        if w is not None and w != prev
    ]
    assert firsts == [2, 0, 0, 1] and labels.count(-100) == len(ids) - 4
    assert "Paris/B-LOC" in render_preview(ner, bert_tok)  # whole words, as in the data


def test_multi_label_head_and_generative_prompts(tmp_path, llama_tok):
    multi = TaskSpec(type="classification", multi_label=True)
    path = write_jsonl(tmp_path / "m.jsonl", [{"text": "a", "label": "x|y"}, {"text": "b", "label": ["y"]}])
    data = prepare_data(DataSpec(train=path, split=NO_SPLIT), multi, llama_tok, head=True)
    assert data.train["labels"] == [[1.0, 1.0], [0.0, 1.0]]
    spec = DataSpec(train=path)
    prompt, gold = generative_prompt(
        {"tokens": ["John", "Smith", "visits", "Paris"], "tags": ["B-PER", "I-PER", "O", "B-LOC"]},
        NER,
        spec,
        ("O", "B-LOC", "B-PER", "I-PER"),
    )
    assert (
        gold == " PER: John Smith\nLOC: Paris"
        and "Entity types: LOC, PER" in prompt
        and prompt.endswith("Answer:")
    )
    prompt, gold = generative_prompt(
        {"text": "hi", "label": "ham"},
        CLS,
        DataSpec(train=path, prompt_template="T={text} L={labels}"),
        ("ham", "spam"),
    )
    assert (prompt, gold) == ("T=hi L=ham, spam", " ham")
    extraction = TaskSpec(type="extraction", fields=("drug", "dose"))
    _, gold = generative_prompt({"text": "t", "output": {"drug": "aspirin", "x": 1}}, extraction, spec, None)
    assert gold == ' {"dose": null, "drug": "aspirin"}'


# --- real data ---------------------------------------------------------------------------------


@needs_shared
def test_real_sms_spam_and_banking77():
    sms = rows_of(SHARED / "sms_spam" / "SMSSpamCollection", CLS, column_names=("label", "text"))
    assert len(sms) == 5574 and {r["label"] for r in sms} == {"ham", "spam"}
    spec = DataSpec(
        train=SHARED / "banking77" / "train.csv",
        test=SHARED / "banking77" / "test.csv",
        columns={"label": "category"},
        split=SplitSpec(validation=0),
    )
    raw, stats = load_split_rows(spec, CLS)
    assert stats["rows_read"] == {"train": 10003, "test": 3080} and len(stats["labels"]) == 77
    assert len(raw["test"]) == 3080 and len(stats["files"]) == 2


@needs_shared
def test_real_conll_and_semeval():
    ner = rows_of(SHARED / "conll2003_ner" / "train_first4000.txt", NER)
    assert len(ner) == 4000 and sum(len(r["tokens"]) for r in ner) == 54882
    spec = DataSpec(train=SHARED / "semeval2010_task8_re" / "TRAIN_FILE_first4000.TXT", split=NO_SPLIT)
    raw, stats = load_split_rows(spec, REL)
    assert stats["rows_read"]["train"] == 4000 and len(stats["labels"]) == 19 and "Other" in stats["labels"]
    assert len(rows_of(SHARED / "semeval2010_task8_re" / "TEST_FILE_FULL.TXT", REL)) == 2717


def test_generative_classification_matches_eval_prompt(tmp_path, qwen_tok):
    rows = [{"text": "charged twice", "label": "billing"}, {"text": "cannot log in", "label": "login"}]
    spec = DataSpec(train=write_jsonl(tmp_path / "t.jsonl", rows), split=NO_SPLIT)
    data = prepare_data(spec, CLS, qwen_tok, head=False)
    assert data.layout == "classification" and data.labels == ("billing", "login")
    prompt, gold = generative_prompt(data.raw["train"][0], CLS, spec, data.labels)
    ids, mask = data.train[0]["input_ids"], data.train[0]["completion_mask"]
    assert qwen_tok.decode(ids) == prompt + gold + "<|im_end|>"
    assert ids[: mask.index(1)] == qwen_tok(prompt)["input_ids"]  # training prompt = evaluation prompt
    assert trained_text(qwen_tok, data.train[0]) == " billing<|im_end|>"


def test_row_level_problems_name_the_line(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [{"text": "a", "label": "x"}, {"text": "b"}])
    with pytest.raises(DataError, match=r"t\.jsonl:2: this row has no \['label'\]"):
        rows_of(path, CLS)
    (tmp_path / "h.tsv").write_text("label\ttext\nham\thi\n")
    assert rows_of(tmp_path / "h.tsv", CLS, column_names=("label", "text")) == [
        {"label": "ham", "text": "hi"}
    ]
    (tmp_path / "l.jsonl").write_bytes(b'{"text": "caf\xe9"}\n')
    with pytest.raises(DataError, match="not UTF-8"):
        rows_of(tmp_path / "l.jsonl")


def test_relation_head_keeps_markers(tmp_path, bert_tok):
    (tmp_path / "re.txt").write_text(SEMEVAL)
    data = prepare_data(DataSpec(train=tmp_path / "re.txt", split=NO_SPLIT), REL, bert_tok, head=True)
    assert data.layout == "relation" and data.labels == ("Instrument-Agency(e2,e1)", "Other")
    assert "<e1>" in data.raw["train"][0]["text"] and data.train["labels"] == [1, 0]


def test_generative_tagging_and_extraction(tmp_path, llama_tok):
    (tmp_path / "n.conll").write_text("John B-PER\nvisits O\nParis B-LOC\n\nno O\n")
    ner = prepare_data(
        DataSpec(train=tmp_path / "n.conll", split=NO_SPLIT),
        TaskSpec(type="token_classification", mode="generative"),
        llama_tok,
        head=False,
    )
    assert ner.layout == "tagging"
    assert [trained_text(llama_tok, r) for r in ner.train] == [" PER: John\nLOC: Paris</s>", " none</s>"]
    rows = [{"text": "took aspirin 5mg", "output": '{"drug": "aspirin", "dose": "5mg"}'}]
    task = TaskSpec(type="extraction", fields=("drug", "dose"))
    data = prepare_data(
        DataSpec(train=write_jsonl(tmp_path / "e.jsonl", rows), split=NO_SPLIT), task, llama_tok, head=False
    )
    assert data.labels is None and data.raw["train"][0]["output"] == {"drug": "aspirin", "dose": "5mg"}
    assert trained_text(llama_tok, data.train[0]) == ' {"dose": "5mg", "drug": "aspirin"}</s>'


def test_a_list_object_or_bytes_in_a_text_column_is_an_error_never_its_repr_as_text(tmp_path, llama_tok):
    import datetime

    import pyarrow as pa
    import pyarrow.parquet as pq

    def prepare(path, **spec):
        return prepare_data(DataSpec(train=path, split=NO_SPLIT, **spec), SFT, llama_tok, head=False)

    for value, said in ((["a", "b"], "a list"), ({"x": 1}, "an object")):
        path = write_jsonl(
            tmp_path / "t.jsonl",
            [{"prompt": "q?", "completion": "fine"}] * 2 + [{"prompt": "q?", "completion": value}],
        )
        with pytest.raises(DataError, match=rf"t.jsonl:3: column 'completion' yields {said}.*, not text"):
            prepare(path)
    pq.write_table(
        pa.Table.from_pylist([{"prompt": "when?", "completion": b"raw"}] * 2), tmp_path / "b.parquet"
    )
    with pytest.raises(DataError, match=r"b.parquet\[row 0\]: column 'completion' yields a bytes") as info:
        prepare(tmp_path / "b.parquet")
    assert "decode the bytes" in info.value.hint
    # a parquet date is written out, as a number is
    pq.write_table(
        pa.Table.from_pylist(
            [{"prompt": "when?", "completion": datetime.date(2024, 1, i + 1)} for i in range(2)]
        ),
        tmp_path / "d.parquet",
    )
    assert prepare(tmp_path / "d.parquet").raw["train"][0]["completion"] == "2024-01-01"
    # chat: OpenAI's text content parts are joined; an image part is refused
    parts = [{"type": "text", "text": "hi"}, {"type": "text", "text": "there"}]
    path = write_jsonl(tmp_path / "c.jsonl", [{"messages": [{"role": "user", "content": parts}, *CHAT[-1:]]}])
    assert prepare(path, chat_template="chatml").raw["train"][0]["messages"][0]["content"] == "hi\nthere"
    image = [{"type": "image_url", "image_url": {"url": "x.png"}}]
    path = write_jsonl(tmp_path / "c.jsonl", [{"messages": [{"role": "user", "content": image}, *CHAT[-1:]]}])
    with pytest.raises(
        DataError, match=r"c.jsonl:1: a user message's content has parts that are not text \(image_url\)"
    ):
        prepare(path, chat_template="chatml")
