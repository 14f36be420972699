"""Input shapes met on real data: regression targets, sentence pairs, relation entity offsets and marker
syntaxes, `label@sentence` lines, CoNLL files by content, nested column paths, split columns, ragged rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import write_jsonl

from lora_adapt.data import load_split_rows, prepare_data, render_preview
from lora_adapt.data.relations import insert_markers, normalise_markers
from lora_adapt.data.sources import detect_file_format
from lora_adapt.errors import DataError
from lora_adapt.recipe.schema import DataSpec, SplitSpec, TaskSpec

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is not present")
NO_SPLIT = SplitSpec(validation=0, test=0)
CLS = TaskSpec(type="classification")
REL = TaskSpec(type="relation_classification")
VAD = TaskSpec(type="regression", targets=("V", "A", "D"))
SCORE = TaskSpec(type="regression")


def rows_of(spec: DataSpec, task: TaskSpec, split: str = "train") -> list[dict]:
    return load_split_rows(spec, task)[0][split]


@pytest.fixture(scope="module")
def bert_tok(tmp_path_factory):
    """A BERT-style WordPiece tokenizer that makes token_type_ids (segment ids), as BERT's own does."""
    from tiny_models import build_tiny_bert
    from transformers import AutoTokenizer

    folder = build_tiny_bert(tmp_path_factory.mktemp("tok") / "bert")
    return AutoTokenizer.from_pretrained(
        folder, model_input_names=["input_ids", "token_type_ids", "attention_mask"]
    )


# --- regression ------------------------------------------------------------------------------


def test_regression_targets_standardised_and_recorded(tmp_path, bert_tok):
    rows = [{"text": f"the patient {i}", "V": 1 + i, "A": str(2 * i), "D": 3.5} for i in range(4)]
    spec = DataSpec(train=write_jsonl(tmp_path / "r.jsonl", rows), split=NO_SPLIT)
    data = prepare_data(spec, VAD, bert_tok, head=True)
    assert data.layout == "regression" and data.labels == ("V", "A", "D")
    targets = data.stats["targets"]
    assert targets["mean"] == [2.5, 3.0, 3.5] and targets["std"][2] == 0.0
    scaling = targets["scaling"]
    assert scaling["method"] == "standardize" and scaling["std"][2] == 1.0  # a constant target is left as is
    first = data.train["labels"][0]
    assert first == pytest.approx([(1 - 2.5) / targets["std"][0], (0 - 3.0) / targets["std"][1], 0.0])
    assert data.raw["train"][0]["targets"] == [1.0, 0.0, 3.5]
    raw = prepare_data(spec, VAD.model_copy(update={"target_scaling": "none"}), bert_tok, head=True)
    assert raw.train["labels"][0] == [1.0, 0.0, 3.5] and raw.stats["targets"]["scaling"]["method"] == "none"
    assert "targets: V=1.00 (trained as" in render_preview(data, bert_tok)


def test_a_target_that_is_not_a_number_names_the_row(tmp_path):
    path = write_jsonl(tmp_path / "r.jsonl", [{"text": "a", "label": "3.5"}, {"text": "b", "label": "high"}])
    with pytest.raises(
        DataError, match=r"r\.jsonl:2: target 'label' is a str \('high'\), not a finite number"
    ):
        rows_of(DataSpec(train=path), SCORE)
    path = write_jsonl(tmp_path / "n.jsonl", [{"text": "a", "score": "NaN"}])
    with pytest.raises(DataError, match="n.jsonl:1: target 'score'"):
        rows_of(DataSpec(train=path), TaskSpec(type="regression", targets=("score",)))
    path = write_jsonl(tmp_path / "m.jsonl", [{"text": "a", "V": 1}])
    with pytest.raises(DataError, match=r"no column 'A'.*the row has: text, V"):
        rows_of(DataSpec(train=path), TaskSpec(type="regression", targets=("V", "A")))


def test_regression_generative_answers_are_numbers(tmp_path, bert_tok):
    from lora_adapt.data import generative_prompt

    spec = DataSpec(train=tmp_path / "x.jsonl")
    prompt, gold = generative_prompt(
        {"text": "so happy", "targets": [3.8, 2.0, 3.1]}, VAD, spec, ("V", "A", "D")
    )
    assert gold == " V: 3.80; A: 2.00; D: 3.10" and "'V: <number>; A: <number>; D: <number>'" in prompt
    prompt, gold = generative_prompt(
        {"text": "a", "text_b": "b", "targets": [2.111111]}, SCORE, spec, ("label",)
    )
    assert gold == " 2.11" and "Text A: a\nText B: b\nAnswer:" in prompt and "pair of texts" in prompt


# --- sentence pairs ------------------------------------------------------------------------------


def test_sentence_pairs_use_the_tokenizers_pair_encoding(tmp_path, bert_tok):
    rows = [
        {
            "premise": "the patient was admitted",
            "hypothesis": "the patient is home",
            "label": "contradiction",
        },
        {"premise": "the tenant pays rent", "hypothesis": "rent is paid", "label": "entailment"},
    ]
    spec = DataSpec(
        train=write_jsonl(tmp_path / "p.jsonl", rows),
        columns={"text_a": "premise", "text_b": "hypothesis"},
        split=NO_SPLIT,
    )
    data = prepare_data(spec, CLS, bert_tok, head=True)
    assert data.raw["train"][0]["text"] == "the patient was admitted" and data.stats["inputs"] == [
        "text",
        "text_b",
    ]
    example = data.train[0]
    assert example["input_ids"] == bert_tok("the patient was admitted", "the patient is home")["input_ids"]
    assert set(example["token_type_ids"]) == {0, 1}  # the second text is segment 1
    assert bert_tok.decode(example["input_ids"]).count("[SEP]") == 2
    broken = write_jsonl(
        tmp_path / "b.jsonl", [{"text": "a", "text_b": "b", "label": "x"}, {"text": "c", "label": "y"}]
    )
    with pytest.raises(DataError, match=r"b\.jsonl:2: this row has no \['text_b'\]"):
        rows_of(DataSpec(train=broken), CLS)


# --- relations ------------------------------------------------------------------------------------


def test_relation_entities_from_character_offsets(tmp_path):
    text = "Aspirin reduces the risk of stroke."
    rows = [
        {
            "sentence": text,
            "entities": [{"start": 0, "end": 7, "type": "DRUG"}, {"start": 28, "end": 34, "type": "DISEASE"}],
            "relation": [{"relation_type": "treats"}],
        }
    ]
    spec = DataSpec(
        train=write_jsonl(tmp_path / "o.jsonl", rows),
        split=NO_SPLIT,
        columns={
            "text": "sentence",
            "label": "relation[0].relation_type",
            "e1_start": "entities[0].start",
            "e1_end": "entities[0].end",
            "e2_start": "entities[1].start",
            "e2_end": "entities[1].end",
            "e1_type": "entities[0].type",
            "e2_type": "entities[1].type",
        },
    )
    (row,) = rows_of(spec, REL)
    assert row == {
        "text": "<e1>[DRUG] Aspirin</e1> reduces the risk of <e2>[DISEASE] stroke</e2>.",
        "label": "treats",
    }
    assert insert_markers("b a", ((2, 3), (0, 1)), (None, None), "x") == "<e2>b</e2> <e1>a</e1>"


@pytest.mark.parametrize(
    "span, message",
    [
        (((0, 7), (5, 10)), "overlap"),
        (((0, 7), (30, 99)), "not inside the text"),
        (((3, 3), (5, 9)), "is empty"),
    ],
)
def test_bad_entity_spans_name_the_row(span, message):
    with pytest.raises(DataError, match=f"row 7: .*{message}"):
        insert_markers("Aspirin reduces the risk.", span, (None, None), "row 7")


def test_common_marker_syntaxes_are_read():
    assert (
        normalise_markers("[E1]aspirin[/E1] treats [E2]pain[/E2]", "x")
        == "<e1>aspirin</e1> treats <e2>pain</e2>"
    )
    assert (
        normalise_markers("@GENE$ binds @CHEMICAL$ here", "x")
        == "<e1>@GENE$</e1> binds <e2>@CHEMICAL$</e2> here"
    )
    assert (
        normalise_markers("<< aspirin >> blocks [[ COX-1 ]]", "x") == "<e1>aspirin</e1> blocks <e2>COX-1</e2>"
    )
    with pytest.raises(DataError, match=r"line 3: .*1 @TYPE\$ placeholders; two are needed"):
        normalise_markers("only @GENE$ here", "line 3")


# --- formats met on real data -------------------------------------------------------------------


def test_sentence_at_label_lines_split_on_the_last_delimiter(tmp_path):
    path = tmp_path / "phrasebank.txt"
    path.write_text("Profit rose to EUR 5 @ share@positive\nSales fell@negative\n\nflat sales@neutral\n")
    spec = DataSpec(train=path, label_delimiter="@", split=NO_SPLIT)
    assert [(r["text"], r["label"]) for r in rows_of(spec, CLS)] == [
        ("Profit rose to EUR 5 @ share", "positive"),
        ("Sales fell", "negative"),
        ("flat sales", "neutral"),
    ]
    path.write_text("good@positive\nno label here\n")
    with pytest.raises(DataError, match=r"phrasebank\.txt:2: no '@' in this line"):
        rows_of(spec, CLS)
    with pytest.raises(DataError, match="reads as jsonl"):
        rows_of(DataSpec(train=write_jsonl(tmp_path / "x.jsonl", [{"text": "a"}]), label_delimiter="@"), CLS)


@pytest.mark.parametrize("name", ["ner.tsv", "ner.txt", "ner.csv", "ner"])
def test_conll_files_are_detected_by_content(tmp_path, name):
    path = tmp_path / name
    path.write_text("-DOCSTART- -X- O\n\nIdentification O\nof O\nAPC2 B-GENE\n\nAPC2 B-GENE\nbinds O\n")
    assert detect_file_format(path, "token_classification") == "conll"
    rows = rows_of(DataSpec(train=path, split=NO_SPLIT), TaskSpec(type="token_classification"))
    assert rows[0] == {"tokens": ["Identification", "of", "APC2"], "tags": ["O", "O", "B-GENE"]}
    tsv = tmp_path / "plain.tsv"
    tsv.write_text("label\ttext\nham\tsee you at noon\n\nspam\twin a prize now\n")
    assert detect_file_format(tsv, "classification") == "tsv"


def test_tagging_preview_shows_whole_words(tmp_path, bert_tok):
    path = tmp_path / "n.conll"
    path.write_text("Identification O\nof O\nAPC2 B-GENE\n")
    data = prepare_data(
        DataSpec(train=path, split=NO_SPLIT), TaskSpec(type="token_classification"), bert_tok, head=True
    )
    assert len(bert_tok.tokenize("APC2")) > 1
    preview = render_preview(data, bert_tok)
    assert "Identification/O of/O APC2/B-GENE" in preview


def test_nested_column_paths_and_type_checks(tmp_path):
    rows = [{"doc": {"body": "rent is late"}, "relation": [{"relation_type": "late"}]}]
    path = write_jsonl(tmp_path / "n.jsonl", rows)
    spec = DataSpec(
        train=path, columns={"text": "doc.body", "label": "relation[0].relation_type"}, split=NO_SPLIT
    )
    assert rows_of(spec, CLS) == [{"text": "rent is late", "label": "late"}]
    wrong = DataSpec(train=path, columns={"text": "doc.body", "label": "relation"}, split=NO_SPLIT)
    with pytest.raises(
        DataError, match=r"n\.jsonl:1: the label column yields a list of 1 object\(s\), not a label"
    ):
        rows_of(wrong, CLS)
    missing = DataSpec(train=path, columns={"text": "doc.body", "label": "relation[2].relation_type"})
    with pytest.raises(
        DataError, match=r"n\.jsonl:1: data.columns.label = 'relation\[2\]\.relation_type'.*1 item"
    ):
        rows_of(missing, CLS)
    text_object = DataSpec(train=path, columns={"text": "doc", "label": "relation[0].relation_type"})
    with pytest.raises(DataError, match="column 'text' yields an object, not text"):
        rows_of(text_object, CLS)


def test_split_column_and_ragged_rows(tmp_path):
    csv = tmp_path / "bank.csv"
    csv.write_text("id,split,V,text\n1,train,3.0,hello\n2,dev,2.5,None\n3,test,4,bye\n4,train,1,again\n")
    spec = DataSpec(path=csv, split=SplitSpec(column="split"))
    raw, stats = load_split_rows(spec, TaskSpec(type="regression", targets=("V",)))
    assert {k: len(v) for k, v in raw.items()} == {"train": 2, "validation": 1, "test": 1}
    assert raw["validation"][0]["text"] == "None" and stats["split"]["method"] == "column"
    csv.write_text("id,split,V,text\n1,training,3.0,hello\n")
    with pytest.raises(DataError, match=r"bank\.csv:2: data.split.column 'split' is 'training'"):
        load_split_rows(spec, TaskSpec(type="regression", targets=("V",)))
    tsv = tmp_path / "sts.csv"
    tsv.write_text(
        'g\tf\t2012\t0001\t5.000\tA "plane.\tA plane.\n' + "g\tf\t2016\t0002\t1\tx\ty\tsrc1\tsrc2\n"
    )
    names = ("genre", "file", "year", "id", "score", "s1", "s2", "src1", "src2")
    ragged = DataSpec(
        train=tsv,
        file_format="tsv",
        column_names=names,
        columns={"text": "s1", "text_b": "s2"},
        split=NO_SPLIT,
    )
    with pytest.raises(DataError, match=r"(?s)sts\.csv:1: 7 field\(s\) but 9 columns.*short_rows: pad"):
        rows_of(ragged, TaskSpec(type="regression", targets=("score",)))
    rows = rows_of(
        ragged.model_copy(update={"short_rows": "pad"}), TaskSpec(type="regression", targets=("score",))
    )
    assert rows == [
        {"text": 'A "plane.', "text_b": "A plane.", "id": "0001", "targets": [5.0]},
        {"text": "x", "text_b": "y", "id": "0002", "targets": [1.0]},
    ]


# --- the real sets --------------------------------------------------------------------------------


@needs_shared
def test_real_emobank_and_stsbenchmark():
    from lora_adapt.recipe import load_recipe

    repo = Path(__file__).resolve().parents[1]
    emo = load_recipe(
        repo / "recipes" / "tasks" / "emobank.yaml", [f"data.path={SHARED / 'emobank' / 'emobank.csv'}"]
    )
    raw, stats = load_split_rows(emo.data, emo.task)
    assert stats["rows_read"] == {"train": 8062, "validation": 1000, "test": 1000}
    assert any(r["text"] == "None" for r in raw["validation"])  # the sentence that is literally None
    assert stats["targets"]["min"] == [1.2, 1.8, 2.0] and stats["targets"]["max"] == [4.6, 4.4, 4.2]
    folder = SHARED / "stsbenchmark"
    sts = load_recipe(
        repo / "recipes" / "tasks" / "stsbenchmark.yaml",
        [
            f"data.{s}={folder / f'sts-{f}.csv'}"
            for s, f in (("train", "train"), ("validation", "dev"), ("test", "test"))
        ],
    )
    raw, stats = load_split_rows(sts.data, sts.task)
    assert stats["rows_read"] == {"train": 5749, "validation": 1500, "test": 1379}  # no rows merged by quotes
    assert len(raw["test"]) == 1379 and all("text_b" in r for r in raw["test"])
    assert (
        min(r["targets"][0] for r in raw["test"]) == 0.0 and max(r["targets"][0] for r in raw["test"]) == 5.0
    )
    assert json.dumps(stats["targets"]["names"]) == '["score"]'


def test_a_mapped_column_wins_over_one_already_named_like_its_target():
    """data.columns says which column the user means, also when the row has the canonical name too."""
    from lora_adapt.data.formats import _renamed

    assert _renamed({"label": "coarse", "meta": {"fine": "FINE"}}, {"label": "meta.fine"})["label"] == "FINE"
    assert _renamed({"fine": "FINE", "label": "coarse"}, {"label": "fine"}) == {"label": "FINE"}
    assert _renamed({"label": "FINE", "fine": "x"}, {"label": "fine"}) == {"label": "x"}
    assert _renamed({"label": "coarse"}, {"label": "meta.fine"}) == {"label": "coarse"}  # path absent here
