"""Explanations: Integrated Gradients through the adapted head are faithful where the answer is known, and the
`explain` command and the run report show them."""

from __future__ import annotations

import json
import random

import pytest
from helpers import cli, read_metrics, run_cli, task_recipe, write_jsonl

from lora_adapt import artifacts as A

FILLERS = ["patient", "contract", "rent", "card", "tenant", "month", "notice", "password", "was", "the"]
DECISIVE = "refund"


def keyword_rows(n: int, seed: int = 0) -> list[dict]:
    """Half the rows contain DECISIVE (label `refund`), the rest only fillers (label `other`)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        words = [rng.choice(FILLERS) for _ in range(6)]
        if i % 2:  # replaced, not inserted: the same length either way, so only the token can decide
            words[rng.randrange(len(words))] = DECISIVE
        rows.append({"text": " ".join(words), "label": "refund" if i % 2 else "other"})
    return rows


@pytest.fixture(scope="module")
def keyword_run(tmp_path_factory, tiny_bert_dir):
    """A LoRA classifier trained where one token decides the label (it learns it: accuracy 1.0)."""
    tmp = tmp_path_factory.mktemp("explain")
    data = write_jsonl(tmp / "kw.jsonl", keyword_rows(160))
    recipe = task_recipe(
        tmp,
        tiny_bert_dir,
        {"path": str(data), "split": {"validation": 0.1, "test": 0.2}},
        {"type": "classification"},
        training={"epochs": 8, "learning_rate": 1e-2},
        evaluation={"baselines": ["tfidf_logreg"], "explanations": {"rows": 6, "steps": 16, "top_words": 3}},
    )
    run_cli("run", str(recipe))
    return tmp


def test_the_deciding_token_gets_the_largest_attribution(keyword_run, tmp_path):
    metrics = read_metrics(keyword_run)
    assert metrics["task"]["accuracy"] >= 0.9  # the model did learn the rule being explained
    out = tmp_path / "why"
    text = "the tenant refund notice passwords card"
    result = run_cli(
        "explain", str(keyword_run / "runs" / "task"), "--text", text, "--steps", "64", "--out", str(out)
    )
    assert "refund (prediction refund)" in result.output
    (explanation,) = json.loads((out / "attributions.json").read_text())
    words = {w: s for w, s, _ in explanation["words"]}
    assert max(words, key=words.get) == DECISIVE
    assert words[DECISIVE] > 3 * max(abs(s) for w, s in words.items() if w != DECISIVE)
    assert "passwords" in words  # sub-words (password ##s) merged into the word
    gap = explanation["score"] - explanation["baseline_score"]
    assert abs(sum(s for _, s, _ in explanation["words"]) - gap) <= abs(explanation["delta"]) + 1e-5
    html = (out / "explanation.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and "<script" not in html and "http" not in html
    assert DECISIVE in html and (out / "explanation-001.png").read_bytes()[:4] == b"\x89PNG"


def test_attributions_sum_to_the_output_difference_within_the_delta(keyword_run):
    from lora_adapt.explain import Attributor, head_for
    from lora_adapt.modeling import load_adapted

    adapted = load_adapted(keyword_run / "runs" / "task")
    info = adapted.first
    head = head_for(info.task_type, info.head, info.labels, multi_label=False)
    attributor = Attributor(adapted.model, adapted.tokenizer, head, steps=8)
    for text in ("refund the card", "the patient was notice month"):
        for target in range(len(head.names)):
            e = attributor.explain(text, target=target)
            out = attributor.outputs(text)
            assert e.score == pytest.approx(float(out[target]), abs=1e-5)
            difference = e.score - e.baseline_score
            assert abs(sum(w.score for w in e.words) - difference) <= abs(e.delta) + 1e-5


def test_the_run_report_lists_influential_words_beside_tfidf(keyword_run):
    metrics = read_metrics(keyword_run)
    explanations = metrics["explanations"]
    assert explanations["rows"] == 6 and "Integrated Gradients" in explanations["method"]
    groups = {g["name"]: g for g in explanations["groups"]}
    assert groups["refund"]["words"][0][0] == DECISIVE
    assert groups["refund"]["tfidf"][0][0] == DECISIVE  # the baseline's top word n-gram for the class
    report = (keyword_run / "runs" / "task" / A.REPORT).read_text()
    assert "## What drives the adapted model's decisions" in report and "TF-IDF baseline" in report
    from lora_adapt.evaluation.baselines import C_GRID

    tfidf = metrics["baselines"]["tfidf_logreg"]  # its C is recorded, and the report says it
    assert tfidf["C"] in C_GRID and tfidf["C_chosen_on"] == "validation"
    assert f"C={tfidf['C']:g} (chosen on validation)" in report


def test_explain_refuses_what_it_cannot_explain(keyword_run, tmp_path):
    run_dir = str(keyword_run / "runs" / "task")
    result = cli("explain", run_dir)
    assert result.exit_code == 2 and "--text" in result.output
    result = cli("explain", run_dir, "--text", "refund", "--text-b", "card")
    assert result.exit_code == 2 and "single texts" in result.output
    result = cli("explain", run_dir, "--text", "refund", "--target", "spam")
    assert result.exit_code == 2 and "refund" in result.output and "other" in result.output
    inputs = write_jsonl(tmp_path / "in.jsonl", [{"text": "refund card"}, {"text": "rent day"}])
    out = tmp_path / "two"
    run_cli("explain", run_dir, "--input", str(inputs), "--steps", "8", "--out", str(out))
    assert sorted(p.name for p in out.iterdir()) == [
        "attributions.json",
        "explanation-001.png",
        "explanation-002.png",
        "explanation.html",
    ]


def test_out_never_replaces_the_run_it_reads_or_the_working_directory(keyword_run, tmp_path, monkeypatch):
    run_dir = keyword_run / "runs" / "task"
    before = sorted(p.name for p in run_dir.iterdir())
    for out in (run_dir, run_dir / "adapter", keyword_run / "runs"):
        result = cli("explain", str(run_dir), "--text", "refund", "--out", str(out), "--overwrite")
        assert result.exit_code == 2 and "would replace" in result.output, out
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    result = cli("explain", str(run_dir), "--text", "refund", "--out", ".", "--overwrite")
    assert result.exit_code == 2 and "would replace" in result.output
    assert sorted(p.name for p in run_dir.iterdir()) == before and (tmp_path / "notes.txt").is_file()
    out = tmp_path / "why"
    run_cli("explain", str(run_dir), "--text", "refund", "--steps", "4", "--out", str(out))
    again = cli("explain", str(run_dir), "--text", "refund", "--steps", "4", "--out", str(out))
    assert again.exit_code == 2 and "already exists" in again.output and "--overwrite" in again.output
    run_cli("explain", str(run_dir), "--text", "rent", "--steps", "4", "--out", str(out), "--overwrite")


def test_the_report_says_when_explanations_failed():
    """A failed attribution never fails the run; the report says it was not computed instead of nothing."""
    from lora_adapt.evaluation.report import explanation_section

    lines = explanation_section({"error": "RuntimeError: out of memory"})
    assert "Not computed" in "\n".join(lines) and "RuntimeError: out of memory" in "\n".join(lines)
    assert explanation_section(None) == []


def test_the_reports_tfidf_features_are_the_scored_baselines(monkeypatch):
    """The report's TF-IDF column shows the baseline that was scored: its C picked on validation (the
    features came from a C=10 model that the baseline, choosing among 0.3 / 3 / 30, never was)."""
    import numpy as np

    from lora_adapt.evaluation.baselines import choose_c, logistic_regression
    from lora_adapt.evaluation.features import TextFeatures
    from lora_adapt.explain import head_for
    from lora_adapt.explain.summary import top_features

    rng = random.Random(3)
    vocab = ["refund", "card", "rent", "day", "late", "fee", "the", "a", "bill", "pay"]

    def rows(n):
        out = []
        for _ in range(n):
            label = rng.choice(["refund", "other"])
            words = rng.sample(vocab, 4) + (["refund"] if label == "refund" and rng.random() < 0.7 else [])
            out.append({"text": " ".join(words), "label": label})
        return out

    train, validation = rows(60), rows(30)
    head = head_for("classification", "sequence_classification", ["other", "refund"], multi_label=False)
    shown = top_features(train, validation, "single", head, top=3)
    features = TextFeatures(train, "single")
    x = features.transform(train)
    labels = [r["label"] for r in train]
    c = choose_c(x, labels, features.transform(validation), [r["label"] for r in validation])
    coef = logistic_regression(c).fit(x, labels).coef_[0]
    words = features.word_names()
    top = [words[i] for i in np.argsort(-coef[: len(words)])[:3] if coef[i] > 0]
    assert [w for w, _ in shown["refund"]] == top
    assert shown["refund"][0][1] == round(float(coef[words.index(top[0])]), 4)

    # with the C the scored baseline recorded in metrics.json, nothing is chosen again
    import lora_adapt.evaluation.baselines as B

    def refit(*args, **kwargs):
        raise AssertionError("C chosen again")

    monkeypatch.setattr(B, "choose_c", refit)
    assert top_features(train, validation, "single", head, top=3, chosen={"C": c}) == shown


class _Steep:
    """A model whose output jumps within a small stretch of the IG path: 8 * sigmoid(200 * (t - 0.43)) at
    path fraction t, as a confident classifier's logit does. Four integration points miss the jump."""

    @staticmethod
    def build(tokenizer, text: str):
        import types

        import torch

        enc = tokenizer(text, return_special_tokens_mask=True)
        words = [
            i for i, special in zip(enc["input_ids"], enc["special_tokens_mask"], strict=True) if not special
        ]

        class Steep(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.emb = torch.nn.Embedding(len(tokenizer), 1)
                with torch.no_grad():
                    self.emb.weight.zero_()
                    self.emb.weight[words] = 1.0 / len(words)

            def get_input_embeddings(self):
                return self.emb

            def forward(self, input_ids, attention_mask, **_):
                t = self.emb(input_ids).sum(dim=(1, 2))
                z = 8 * torch.sigmoid(200 * (t - 0.43))
                return types.SimpleNamespace(logits=torch.stack([-z, z], dim=-1))

        return Steep()


def test_integrated_gradients_doubles_its_steps_until_the_attributions_add_up(tiny_bert_dir):
    """Few integration points miss a step in the output along the path: the attributions then sum to a
    fraction of the output gap. The attributor doubles the steps until they add up, and says when they
    never did; the report's ranking leaves such rows out and says how many."""
    from transformers import AutoTokenizer

    from lora_adapt.evaluation.report import explanation_section
    from lora_adapt.explain import Attributor, head_for
    from lora_adapt.explain.summary import influential_words

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    text = "refund the card"
    model = _Steep.build(tokenizer, text)
    head = head_for("classification", "sequence_classification", ["other", "refund"], multi_label=False)

    fixed = Attributor(model, tokenizer, head, steps=4, max_steps=4).explain(text)
    gap = fixed.score - fixed.baseline_score
    assert fixed.prediction == "refund" and gap > 7.9
    assert not fixed.converged and fixed.steps == 4 and abs(fixed.delta) > 0.05 * gap

    doubled = Attributor(model, tokenizer, head, steps=4, max_steps=1024).explain(text)
    assert doubled.converged and 4 < doubled.steps <= 1024 and abs(doubled.delta) <= 0.05 * gap
    assert sum(w.score for w in doubled.words) == pytest.approx(gap, rel=0.05)
    assert doubled.to_json()["steps"] == doubled.steps and doubled.to_json()["converged"] is True

    rows = [{"text": text, "label": "refund"}] * 3

    def summarise(max_steps: int) -> dict:
        attributor = Attributor(model, tokenizer, head, steps=4, max_steps=max_steps)
        return influential_words(attributor, rows, [], kind="single", top=3, sample=3, seed=0)

    summary = summarise(4)
    assert summary["explanations"] == 3 and summary["unconverged"] == 3 and summary["groups"] == []
    summary = summarise(1024)
    assert summary["unconverged"] == 0 and summary["groups"][0]["name"] == "refund"
    assert {w for w, _ in summary["groups"][0]["words"]} == {"refund", "the", "card"}
    note = "\n".join(explanation_section({**summary, "unconverged": 1}))
    assert "1 of 3 explanations did not converge" in note and "max_steps" in note


def test_explanation_steps_are_checked_in_the_recipe(tmp_path, tiny_bert_dir):
    data = write_jsonl(tmp_path / "kw.jsonl", keyword_rows(20))
    recipe = task_recipe(
        tmp_path,
        tiny_bert_dir,
        {"path": str(data)},
        {"type": "classification"},
        evaluation={"explanations": {"steps": 64, "max_steps": 32}},
    )
    result = cli("validate", str(recipe))
    assert result.exit_code == 2 and "max_steps (32) is below steps (64)" in result.output
