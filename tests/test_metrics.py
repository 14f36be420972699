"""Task metrics against hand-computed values (no models)."""

from __future__ import annotations

import pytest

from lora_adapt.evaluation import metrics as M
from lora_adapt.evaluation import parsing
from lora_adapt.evaluation.baselines import majority, relation_text, shape, tfidf_logreg
from lora_adapt.evaluation.report import comparison_table
from lora_adapt.evaluation.scoring import spans_from_tags
from lora_adapt.recipe.schema import TaskSpec


def test_classification_metrics_by_hand_with_an_invalid_answer():
    gold = ["a", "a", "b", "b", "c"]
    pred = ["a", "b", "b", None, "c"]  # None: an unparseable generated answer
    m = M.classification_metrics(gold, pred, ["a", "b", "c"])
    assert m["n"] == 5 and m["invalid"] == 1
    assert m["accuracy"] == 0.6  # the invalid answer is wrong, not dropped
    assert m["per_class"]["a"] == {
        "precision": 1.0,
        "recall": 0.5,
        "f1": 0.666667,
        "support": 2,
        "predicted": 1,
        "correct": 1,
    }
    assert m["per_class"]["b"]["precision"] == 0.5 and m["per_class"]["b"]["recall"] == 0.5
    assert m["f1_macro"] == pytest.approx((2 / 3 + 0.5 + 1) / 3, abs=1e-6)
    assert (m["precision_micro"], m["recall_micro"]) == (0.75, 0.6)  # invalid: a miss, not a false positive
    assert m["f1_micro"] == pytest.approx(2 * 0.75 * 0.6 / 1.35, abs=1e-6)
    assert m["f1_weighted"] == pytest.approx((2 / 3 * 2 + 0.5 * 2 + 1) / 5, abs=1e-6)
    assert m["confusion_matrix"] == {
        "labels": ["a", "b", "c"],
        "columns": ["a", "b", "c", "(invalid)"],
        "matrix": [[1, 1, 0, 0], [0, 1, 0, 1], [0, 0, 1, 0]],
    }


def test_classification_metrics_match_sklearn_without_invalid_answers():
    from sklearn.metrics import accuracy_score, f1_score

    gold = ["x", "y", "z", "x", "y", "x", "z", "z"]
    pred = ["x", "x", "z", "y", "y", "x", "x", "z"]
    m = M.classification_metrics(gold, pred, ["x", "y", "z"])
    assert m["accuracy"] == pytest.approx(accuracy_score(gold, pred))
    for avg in ("macro", "micro", "weighted"):
        assert m[f"f1_{avg}"] == pytest.approx(f1_score(gold, pred, average=avg), abs=1e-6)


def test_multilabel_metrics_by_hand():
    m = M.multilabel_metrics([["x"], ["x", "y"], []], [["x"], ["y"], None], ["x", "y"])
    assert m["invalid"] == 1
    assert m["subset_accuracy"] == pytest.approx(1 / 3, abs=1e-6)
    assert m["per_class"]["x"]["recall"] == 0.5 and m["per_class"]["y"]["f1"] == 1.0
    assert m["f1_macro"] == pytest.approx((2 / 3 + 1) / 2, abs=1e-6)
    assert (m["precision_micro"], m["recall_micro"]) == (1.0, pytest.approx(2 / 3, abs=1e-6))
    assert m["f1_samples"] == pytest.approx(
        (1 + 2 / 3 + 0) / 3, abs=1e-6
    )  # invalid row scores 0, even with empty gold


def test_relation_metrics_follow_the_semeval_scorer():
    gold = ["C-E(e1,e2)", "C-E(e2,e1)", "C-W(e1,e2)", "Other", "Other"]
    pred = ["C-E(e1,e2)", "C-E(e1,e2)", "Other", "C-W(e2,e1)", "Other"]
    labels = ["C-E(e1,e2)", "C-E(e2,e1)", "C-W(e1,e2)", "C-W(e2,e1)", "Other"]
    m = M.relation_metrics(gold, pred, labels, "Other")
    # (9+1)-way with direction: C-E: 1 exact of 2 predicted C-E (one with the wrong direction) and 2 gold;
    # C-W: 0 correct of 1 predicted; Other left out of the average.
    assert m["per_relation_official"]["C-E"] == {
        "precision": 0.5,
        "recall": 0.5,
        "f1": 0.5,
        "correct": 1,
        "predicted": 2,
        "support": 2,
    }
    assert m["per_relation_official"]["C-W"]["f1"] == 0.0
    assert set(m["per_relation_official"]) == {"C-E", "C-W"}
    assert m["f1_macro_official"] == 0.25
    # 2*9+1-way: C-E(e1,e2) P=1/2 R=1 -> 2/3; C-E(e2,e1) 0; C-W(e1,e2) 0 (the C-W(e2,e1) prediction is another label)
    assert m["f1_macro_directed"] == pytest.approx((2 / 3) / 3, abs=1e-6)
    assert m["accuracy"] == 0.4


def test_relation_metrics_count_invalid_answers_as_misses():
    m = M.relation_metrics(["R(e1,e2)", "Other"], [None, "Other"], ["R(e1,e2)", "Other"], "Other")
    assert m["invalid"] == 1 and m["f1_macro_official"] == 0.0 and m["accuracy"] == 0.5


def test_entity_metrics_use_exact_spans_with_conlleval_decoding():
    from seqeval.metrics import f1_score

    gold = [["B-PER", "I-PER", "O", "B-LOC"]]
    lenient = [["B-PER", "I-PER", "O", "I-LOC"]]  # conlleval: a stray I-LOC starts a LOC entity
    assert M.entity_metrics(gold, lenient)["f1"] == 1.0
    short = [["B-PER", "O", "O", "B-LOC"]]  # PER span ends early: no partial credit
    m = M.entity_metrics(gold, short)
    assert (m["precision"], m["recall"], m["f1"]) == (0.5, 0.5, 0.5)
    assert m["per_class"]["PER"]["f1"] == 0.0 and m["per_class"]["LOC"]["f1"] == 1.0
    assert m["token_accuracy"] == 0.75
    assert m["f1"] == pytest.approx(f1_score(gold, short))


def test_entity_set_metrics_for_generated_entities():
    gold = [[("PER", "John Smith"), ("LOC", "Paris")], [("ORG", "ACME")]]
    pred = [[("PER", "John Smith"), ("LOC", "paris")], None]
    m = M.entity_set_metrics(gold, pred)
    assert m["invalid"] == 1
    assert (m["precision"], m["recall"]) == (0.5, pytest.approx(1 / 3, abs=1e-6))


def test_extraction_metrics_by_hand():
    gold = [{"drug": "Aspirin", "dose": "5 mg"}, {"drug": "x", "dose": None}]
    pred = [{"drug": "aspirin ", "dose": "10 mg"}, None]
    m = M.extraction_metrics(gold, pred, ["drug", "dose"])
    assert m["invalid"] == 1 and m["exact_match"] == 0.0
    assert (m["field_precision"], m["field_recall"]) == (0.5, pytest.approx(1 / 3, abs=1e-6))
    assert m["field_f1"] == 0.4
    assert m["per_field"]["drug"]["correct"] == 1 and m["per_field"]["dose"]["correct"] == 0


def test_parsing_is_strict():
    labels = ["billing", "outage"]
    assert parsing.parse_label(" Billing.\nanything after the first line", labels) == "billing"
    assert parsing.parse_label("I think billing", labels) is None
    assert parsing.parse_label("", labels) is None
    assert parsing.parse_multilabel("outage|billing", labels, "|") == ["billing", "outage"]
    assert parsing.parse_multilabel("outage|weather", labels, "|") is None
    assert parsing.parse_multilabel("none", labels, "|") == []
    assert parsing.parse_entities("PER: John  Smith\nLOC: Paris", ["PER", "LOC"]) == [
        ("PER", "John Smith"),
        ("LOC", "Paris"),
    ]
    assert parsing.parse_entities("PER John", ["PER"]) is None
    assert parsing.parse_entities("none", ["PER"]) == []
    assert parsing.parse_json_object('{"a": 1} trailing') == {"a": 1}
    assert parsing.parse_json_object("the answer is {}") is None


def test_spans_from_tags_and_word_shapes():
    assert spans_from_tags(["John", "Smith", "in", "Paris"], ["B-PER", "I-PER", "O", "B-LOC"]) == [
        ("PER", "John Smith"),
        ("LOC", "Paris"),
    ]
    assert shape("McDonald") == "XxXx" and shape("AB-12") == "X-d"


def test_statistical_baselines():
    task = TaskSpec(type="classification")
    train = [
        {"text": t, "label": lab}
        for t, lab in [
            ("my bill is too high", "billing"),
            ("charged twice on my bill", "billing"),
            ("refund my bill", "billing"),
            ("power is out", "outage"),
            ("no power since morning", "outage"),
        ]
    ]
    test = [{"text": "the bill doubled", "label": "billing"}, {"text": "power cut again", "label": "outage"}]
    assert majority(train, test, "single", task) == ["billing", "billing"]
    assert tfidf_logreg(train, [], test, "single", task) == ["billing", "outage"]
    text = relation_text("The <e1>cup</e1> sat in the <e2>box</e2>.")
    assert "e1_cup" in text and "e2_box" in text and "btw_in" in text and "order_e1e2" in text


def test_comparison_table_lists_every_system():
    metrics = {
        "evaluation": {"kind": "single", "mode": "head"},
        "task": {"accuracy": 0.9, "f1_macro": 0.8, "method": "lora r=8"},
        "baselines": {
            "majority": {"accuracy": 0.5, "f1_macro": 0.2, "method": "most frequent"},
            "full_finetune": {"skipped": "not asked"},
        },
    }
    table = comparison_table(metrics)
    assert "| **adapted (LoRA)** | 0.9000 | 0.8000 |" in table
    assert "majority class" in table and "not asked" in table


def test_sklearn_metrics_equal_the_hand_written_ones_on_the_quickstart_predictions():
    """scikit-learn computes P/R/F1 and the confusion matrix now; on the committed quickstart predictions (and the
    same predictions with unparseable answers, and a multi-label variant) every count and label is equal and
    every score equal to the 6th decimal: the hand-written scorer averaged per-class F1s already rounded to 6
    places for f1_weighted, so two weighted F1s move by 1e-6 (0.902977 -> 0.902976, 0.649810 -> 0.649811).
    tests/fixtures/quickstart_predictions.json says how the fixture was made."""
    import json
    from pathlib import Path

    fixture = json.loads((Path(__file__).parent / "fixtures" / "quickstart_predictions.json").read_text())
    labels, gold, pred = fixture["labels"], fixture["gold"], fixture["pred"]
    step, start = 7, fixture["invalid_every_7th_from"]
    invalid = [None if i % step == start else p for i, p in enumerate(pred)]

    def same(got, want):
        if isinstance(want, dict):
            return set(got) == set(want) and all(same(got[k], want[k]) for k in want)
        if isinstance(want, float):
            return abs(got - want) <= 1.01e-6
        return got == want

    assert same(M.classification_metrics(gold, pred, labels), fixture["expected"]["single"])
    assert same(M.classification_metrics(gold, invalid, labels), fixture["expected"]["single_with_invalid"])
    assert fixture["expected"]["single_with_invalid"]["invalid"] == sum(p is None for p in invalid) > 0
    assert same(
        M.multilabel_metrics(fixture["multi_gold"], fixture["multi_pred"], labels),
        fixture["expected"]["multi"],
    )
    assert (
        M.classification_metrics(gold, pred, labels)["f1_macro"] == fixture["expected"]["single"]["f1_macro"]
    )


def test_a_label_no_row_of_the_split_uses_does_not_lower_the_macro_scores():
    """A label only another split carries (small training slices add such labels to the set) is reported
    per class but left out of the macro averages, as scikit-learn does by default."""
    from lora_adapt.evaluation.metrics import classification_metrics

    gold, pred = ["a", "b", "a", "b"], ["a", "b", "a", "a"]
    two = classification_metrics(gold, pred, ["a", "b"])
    three = classification_metrics(gold, pred, ["a", "b", "c"])
    assert three["f1_macro"] == two["f1_macro"] and three["precision_macro"] == two["precision_macro"]
    assert three["per_class"]["c"]["support"] == 0
    missed = classification_metrics(["a", "b", "c"], ["a", "b", "a"], ["a", "b", "c"])
    assert missed["f1_macro"] < 1.0 and missed["per_class"]["c"]["recall"] == 0.0  # a gold label still counts
