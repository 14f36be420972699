"""Adapters per domain: `predict` for every task kind, many adapters on one base (AdapterSet: mixed-adapter
batches, classifier heads of different widths, load/unload, refusals), compose and eval-matrix."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from helpers import cli, copy_run, run_cli, write_jsonl
from tiny_models import build_tiny_bert

from lora_adapt import AdapterSet
from lora_adapt import artifacts as A
from lora_adapt.domains.adapter_set import UnknownAdapterError, tensor_bytes
from lora_adapt.errors import ModelLoadError, UsageError
from lora_adapt.modeling import load_adapted
from lora_adapt.recipe.serving import GenerationSpec
from lora_adapt.rundir import read_run

TEXTS = [
    "my bill was charged twice",
    "the power is out again",
    "please read my meter",
    "refund the extra charge",
]


@pytest.fixture(scope="module")
def heads(domain_runs) -> AdapterSet:
    return AdapterSet.load({"tickets": domain_runs["tickets"], "binary": domain_runs["binary"]})


@pytest.fixture(scope="module")
def chats(domain_runs) -> AdapterSet:
    return AdapterSet.load({"chat": domain_runs["chat"], "chat2": domain_runs["chat2"]})


def own_probabilities(run_dir: Path, texts: list[str]) -> torch.Tensor:
    """Softmax of the adapter alone, loaded the standard way (load_adapted), one text at a time."""
    adapted = load_adapted(run_dir)
    out = []
    with torch.no_grad():
        for text in texts:
            enc = adapted.tokenizer(text, return_tensors="pt")
            out.append(torch.softmax(adapted.model(**enc).logits[0].float(), -1))
    return torch.stack(out)


def as_vector(result: dict, labels: tuple[str, ...]) -> torch.Tensor:
    return torch.tensor([result["probabilities"][label] for label in labels])


# --- predict ------------------------------------------------------------------------------------


def test_predict_head_gives_labels_with_probabilities_equal_to_the_adapter_alone(domain_runs, tmp_path):
    inputs = write_jsonl(tmp_path / "in.jsonl", [{"text": t, "id": i} for i, t in enumerate(TEXTS)])
    out = tmp_path / "out.jsonl"
    run_cli(
        "predict", str(domain_runs["tickets"]), "--input", str(inputs), "--out", str(out), "--top-labels", "0"
    )
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    labels = read_run(domain_runs["tickets"]).labels
    assert [r["id"] for r in rows] == [0, 1, 2, 3] and [r["text"] for r in rows] == TEXTS
    alone = own_probabilities(domain_runs["tickets"], TEXTS)
    for row, expected in zip(rows, alone, strict=True):
        prediction = row["prediction"]
        assert prediction["label"] == labels[int(expected.argmax())]
        assert torch.allclose(as_vector(prediction, labels), expected, atol=1e-5)


def test_predict_tagging_gives_entity_spans_and_one_tag_per_word(domain_runs):
    result = run_cli("predict", str(domain_runs["tags"]), "--text", "John Smith flew to Paris on day 3")
    row = json.loads(result.stdout.strip().splitlines()[-1])
    tags = row["prediction"]["tags"]
    assert len(tags) == 8 and set(tags) <= {"O", "B-PER", "I-PER", "B-LOC"}
    for entity in row["prediction"]["entities"]:
        words = "John Smith flew to Paris on day 3".split()
        assert entity["text"] == " ".join(words[entity["start"] : entity["end"]])


def test_predict_sft_chat_generates_with_its_template_and_respects_the_budget(domain_runs):
    result = run_cli(
        "predict", str(domain_runs["chat"]), "--text", "Summarise ticket 3.", "--max-new-tokens", "4"
    )
    prediction = json.loads(result.stdout.strip().splitlines()[-1])["prediction"]
    assert prediction["completion_tokens"] <= 4 and prediction["finish_reason"] in ("stop", "length")
    chats = AdapterSet.load({"chat": domain_runs["chat"]})
    prepared = chats.prepare("chat", "Summarise ticket 3.")
    rendered = chats["chat"].tokenizer.decode(prepared.ids)
    assert rendered.startswith("<|im_start|>user\n") and rendered.endswith("<|im_start|>assistant\n")


def test_predict_generative_classification_reads_the_answer_as_eval_does(domain_runs):
    result = run_cli("predict", str(domain_runs["answer"]), "--text", "the meter display is blank")
    prediction = json.loads(result.stdout.strip().splitlines()[-1])["prediction"]
    labels = read_run(domain_runs["answer"]).labels
    assert prediction["valid"] == (prediction["label"] is not None)
    assert prediction["label"] is None or prediction["label"] in labels


def test_predict_usage_errors_exit_2(domain_runs, tmp_path):
    assert cli("predict", str(domain_runs["tickets"])).exit_code == 2  # neither --input nor --text
    bad = cli("predict", str(domain_runs["chat"]), "--text", "x", "--temperature", "-1")
    assert bad.exit_code == 2 and "--temperature" in bad.output
    empty = write_jsonl(tmp_path / "empty.jsonl", [{"other": 1}])
    missing = cli("predict", str(domain_runs["tickets"]), "--input", str(empty))
    assert missing.exit_code == 2 and "`text`" in missing.output


def test_predict_refuses_generation_options_an_adapter_would_ignore(domain_runs):
    head = cli("predict", str(domain_runs["tickets"]), "--text", "x", "--temperature", "0.7", "--stop", "!")
    assert head.exit_code == 2 and "head adapter" in head.output and "does not generate" in head.output
    assert "--temperature, --stop" in head.output and "Traceback" not in head.output
    tagger = cli("predict", str(domain_runs["tags"]), "--text", "John flew", "--max-new-tokens", "4")
    assert tagger.exit_code == 2 and "--max-new-tokens" in tagger.output and "head adapter" in tagger.output
    answer = cli("predict", str(domain_runs["answer"]), "--text", "x", "--max-new-tokens", "4")
    assert answer.exit_code == 2 and "evaluation.max_new_tokens" in answer.output


def test_predict_refuses_top_labels_for_an_adapter_without_label_probabilities(domain_runs):
    for name, kind in (("chat", "generation"), ("answer", "answer"), ("tags", "tagging")):
        refused = cli("predict", str(domain_runs[name]), "--text", "John flew", "--top-labels", "3")
        assert refused.exit_code == 2, refused.output
        assert f"--top-labels: {name!r} is a {kind} adapter" in refused.output
        assert "classifier and relation heads" in refused.output and "Traceback" not in refused.output
    head = cli("predict", str(domain_runs["tickets"]), "--text", TEXTS[0], "--top-labels", "1")
    assert head.exit_code == 0, head.output
    assert len(json.loads(head.output.splitlines()[-1])["prediction"]["probabilities"]) == 1


def test_predict_out_follows_the_umask_and_is_whole_or_untouched(tmp_path):
    import os

    from lora_adapt.domains.predict import write_jsonl

    out = tmp_path / "out.jsonl"
    old = os.umask(0o022)
    try:
        assert write_jsonl(out, [{"a": 1}, {"a": 2}]) == 2
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == 0o644  # as every other output (mkstemp alone gives 0600)

    def killed():
        yield {"a": 3}
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_jsonl(out, killed())
    assert [json.loads(line) for line in out.read_text().splitlines()] == [{"a": 1}, {"a": 2}]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]  # no temporary file left


def pair_score_rows(n: int) -> list[dict]:
    """Sentence pairs scored by how many words of ``text_b`` are in ``text`` (two targets)."""
    words = ["bill", "meter", "power", "refund", "charge", "outage"]
    rows = []
    for i in range(n):
        a = [words[(i + k) % 6] for k in range(3)]
        b = [words[(i * 2 + k) % 6] for k in range(2)]
        rows.append({"text": " ".join(a), "text_b": " ".join(b), "V": sum(w in a for w in b), "A": i % 3})
    return rows


def test_predict_regression_pair_head_undoes_the_scaling_and_mixes_with_a_classifier(
    domain_runs, tiny_bert_dir, tmp_path
):
    from helpers import SILENT, task_recipe

    from lora_adapt.pipeline import run
    from lora_adapt.recipe import load_recipe

    data = write_jsonl(tmp_path / "pairs.jsonl", pair_score_rows(30))
    task = {"type": "regression", "targets": ["V", "A"], "pooling": "mean"}
    split = {"validation": 0.15, "test": 0.2}
    recipe = task_recipe(tmp_path, tiny_bert_dir, {"path": str(data), "split": split}, task, **SILENT)
    run_dir = run(load_recipe(recipe, ["name=pairs"]), echo=lambda _: None).run_dir
    scaling = read_run(run_dir).manifest["task"]["targets"]["scaling"]
    rows = pair_score_rows(3)

    adapted = load_adapted(run_dir)  # by hand: the pair encoding, the head, the scaling undone
    with torch.no_grad():
        texts = ([r["text"] for r in rows], [r["text_b"] for r in rows])
        enc = adapted.tokenizer(*texts, padding=True, return_tensors="pt")
        raw = adapted.model(**enc).logits.float()
    expected = raw * torch.tensor(scaling["std"]) + torch.tensor(scaling["mean"])

    both = AdapterSet.load({"pairs": run_dir, "tickets": domain_runs["tickets"]})
    items = [("pairs", rows[0]), ("tickets", TEXTS[0]), ("pairs", rows[1]), ("pairs", rows[2])]
    mixed = both.run(items, top_k=0)
    got = torch.tensor([[r["values"]["V"], r["values"]["A"]] for r in mixed if r["adapter"] == "pairs"])
    assert torch.allclose(got, expected, atol=1e-5)
    alone = own_probabilities(domain_runs["tickets"], [TEXTS[0]])[0]
    assert torch.allclose(as_vector(mixed[1], read_run(domain_runs["tickets"]).labels), alone, atol=1e-5)

    one_text = cli("predict", str(run_dir), "--text", "bill meter")
    assert one_text.exit_code == 2 and "sentence pairs" in one_text.output and "text_b" in one_text.output
    inputs = write_jsonl(tmp_path / "in.jsonl", [{"text_a": r["text"], "text_b": r["text_b"]} for r in rows])
    out = run_cli("predict", str(run_dir), "--input", str(inputs)).output
    values = [json.loads(line)["prediction"]["values"] for line in out.splitlines() if line.startswith("{")]
    assert torch.allclose(torch.tensor([[v["V"], v["A"]] for v in values]), expected, atol=1e-5)


# --- many adapters on one base ----------------------------------------------------------------------


def test_mixed_head_batch_equals_each_adapter_alone_across_label_widths(heads, domain_runs):
    items = [("tickets", TEXTS[0]), ("binary", TEXTS[1]), ("binary", TEXTS[0]), ("tickets", TEXTS[3])]
    mixed = heads.run(items, top_k=0)
    assert [r["adapter"] for r in mixed] == [name for name, _ in items]
    for name in ("tickets", "binary"):
        labels = read_run(domain_runs[name]).labels
        texts = [text for n, text in items if n == name]
        alone = own_probabilities(domain_runs[name], texts)
        got = torch.stack([as_vector(r, labels) for r, (n, _) in zip(mixed, items, strict=True) if n == name])
        assert got.shape[1] == len(labels) == len(mixed[[n for n, _ in items].index(name)]["probabilities"])
        assert torch.allclose(got, alone, atol=1e-5)


def test_mixed_generation_batch_gives_each_adapter_its_own_greedy_tokens(chats):
    prompts = ["Summarise ticket 1.", "Summarise ticket 2 about rent.", {"text": "The tenant shall"}]
    names = ["chat", "chat2", "base"]
    greedy = GenerationSpec(max_new_tokens=6)
    mixed = chats.run(list(zip(names, prompts, strict=True)), greedy)
    alone = [chats.run([(n, p)], greedy)[0] for n, p in zip(names, prompts, strict=True)]
    assert [m["text"] for m in mixed] == [a["text"] for a in alone]
    assert [m["completion_tokens"] for m in mixed] == [a["completion_tokens"] for a in alone]
    assert len({m["text"] for m in chats.run([(n, prompts[0]) for n in names], greedy)}) > 1, (
        "adapters must differ"
    )


def test_adapters_load_and_unload_at_runtime_and_report_their_memory(domain_runs, tmp_path):
    aset = AdapterSet.load({"tickets": domain_runs["tickets"]})
    before = tensor_bytes(aset.model)
    member = aset.add("binary", domain_runs["binary"])
    memory = member.memory
    assert memory["added_bytes"] == tensor_bytes(aset.model) - before
    assert memory["added_bytes"] == memory["parameter_bytes"] + memory["padding_bytes"] > 0
    assert (
        memory["padding_bytes"] == (3 - 2) * (64 + 1) * 4
    )  # one zero row (weight + bias) of the 3-wide head
    aset.remove("binary")
    assert tensor_bytes(aset.model) == before and "binary" not in aset
    with pytest.raises(UnknownAdapterError):
        aset.remove("binary")
    with pytest.raises(UnknownAdapterError):
        aset.run([("binary", "x")])
    wider = aset.add("wide", domain_runs["tickets"])  # same adapter under another name: same answers
    a, b = aset.run([("tickets", TEXTS[0]), ("wide", TEXTS[0])], top_k=0)
    assert a["probabilities"] == b["probabilities"] and wider.memory["padding_bytes"] == 0


def test_an_adapter_trained_on_another_base_is_refused_naming_the_difference(domain_runs, heads, tmp_path):
    from lora_adapt.manifest import weights_fingerprint

    other_base = build_tiny_bert(tmp_path / "other-bert", seed=7)
    moved = copy_run(domain_runs["binary"], tmp_path / "moved" / "moved", scale=1.0)
    for file in (moved / A.MANIFEST, moved / A.ADAPTER_DIR / A.ADAPTER_RECORD):  # as if trained on other_base
        record = A.read_json(file)
        record["base_model"]["weights_fingerprint"] = weights_fingerprint(other_base)
        A.atomic_write_json(file, record)
    with pytest.raises(ModelLoadError, match="weights_fingerprint differs"):
        heads.add("moved", moved)
    assert "moved" not in heads
    with pytest.raises(UsageError, match="token_classification head"):
        heads.add("tags", domain_runs["tags"])
    with pytest.raises(ModelLoadError, match="is not the base"):
        heads.add("chat", domain_runs["chat"] / A.ADAPTER_DIR)  # a Qwen2 adapter: model type differs first
    with pytest.raises(UsageError, match="cannot name an adapter"):
        heads.add("base", domain_runs["binary"])


# --- compose and eval-matrix -------------------------------------------------------------------------


def lora_pairs(run_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(run_dir / A.ADAPTER_DIR / A.ADAPTER_WEIGHTS)


def test_linear_composition_equals_the_weighted_sum_computed_by_hand(domain_runs, tmp_path):
    out = tmp_path / "composed"
    run_cli(
        "compose",
        f"chat={domain_runs['chat']}",
        f"chat2={domain_runs['chat2']}",
        "--method",
        "linear",
        "--weights",
        "0.7,0.3",
        "--out",
        str(out),
    )
    config = A.read_json(domain_runs["chat"] / A.ADAPTER_DIR / A.ADAPTER_CONFIG)
    scaling = config["lora_alpha"] / config["r"]
    first, second, composed = (
        lora_pairs(domain_runs["chat"]),
        lora_pairs(domain_runs["chat2"]),
        lora_pairs(out),
    )
    assert composed.keys() == first.keys()
    for key, value in composed.items():
        a, b = (
            math.sqrt(0.7 * scaling),
            math.sqrt(0.3 * scaling),
        )  # PEFT: A and B each weighted by sqrt(w * s)
        assert torch.allclose(value, a * first[key] + b * second[key], atol=1e-6), key
    run = read_run(out)
    assert run.manifest["composition"]["method"] == "linear" and run.manifest["composition"]["weights"] == [
        0.7,
        0.3,
    ]
    assert [s["name"] for s in run.manifest["composition"]["sources"]] == ["chat", "chat2"]
    assert (
        A.read_json(out / A.ADAPTER_DIR / A.ADAPTER_CONFIG)["lora_alpha"]
        == A.read_json(out / A.ADAPTER_DIR / A.ADAPTER_CONFIG)["r"]
    )


def test_cat_composition_update_is_the_weighted_sum_of_the_updates(domain_runs, tmp_path):
    out = tmp_path / "cat"
    run_cli(
        "compose",
        str(domain_runs["chat"]),
        str(domain_runs["chat2"]),
        "--method",
        "cat",
        "--weights",
        "0.25",
        "--weights",
        "0.75",
        "--out",
        str(out),
    )
    config = A.read_json(domain_runs["chat"] / A.ADAPTER_DIR / A.ADAPTER_CONFIG)
    scaling = config["lora_alpha"] / config["r"]
    first, second, composed = (
        lora_pairs(domain_runs["chat"]),
        lora_pairs(domain_runs["chat2"]),
        lora_pairs(out),
    )
    for key in [k for k in composed if "lora_A" in k]:
        b_key = key.replace("lora_A", "lora_B")
        delta = composed[b_key] @ composed[key]  # the composed adapter's scaling is 1 (alpha = r)
        expected = sum(w * scaling * run[b_key] @ run[key] for w, run in ((0.25, first), (0.75, second)))
        assert torch.allclose(delta, expected, atol=1e-6), key


def test_compose_refuses_classifier_heads_and_eval_matrix_scores_every_system(domain_runs, tmp_path):
    refused = cli(
        "compose", str(domain_runs["tickets"]), str(domain_runs["binary"]), "--out", str(tmp_path / "x")
    )
    assert refused.exit_code == 2 and "modules_to_save" in refused.output and not (tmp_path / "x").exists()
    composed = tmp_path / "mix"
    run_cli("compose", f"chat={domain_runs['chat']}", f"chat2={domain_runs['chat2']}", "--out", str(composed))
    out = tmp_path / "matrix"
    run_cli(
        "eval-matrix",
        f"chat={domain_runs['chat']}",
        f"chat2={domain_runs['chat2']}",
        f"mix={composed}",
        "--out",
        str(out),
    )
    result = A.read_json(out / "matrix.json")
    assert result["domains"] == ["chat", "chat2"] and result["systems"] == ["chat", "chat2", "mix", "base"]
    assert result["metric"] == "loss" and result["compositions"]["mix"]["method"] == "linear"
    for domain in result["domains"]:
        assert all(result["cells"][domain][system]["value"] > 0 for system in result["systems"])
    assert (out / "matrix.png").stat().st_size > 1000 and "| mix (composition) |" in (
        out / "matrix.md"
    ).read_text()


def test_regression_predictions_score_as_eval_scores_them_with_unreadable_numbers_at_the_mean():
    from lora_adapt.domains.prompting import Prompting
    from lora_adapt.domains.scores import score_predictions
    from lora_adapt.domains.tasks import NumberAnswer
    from lora_adapt.recipe.schema import DataSpec, TaskSpec

    task = TaskSpec(type="regression", mode="generative", targets=("V", "A"))
    prompting = Prompting(task, DataSpec.model_construct(), "regression", None, 64, 8)
    kind = NumberAnswer(prompting, ("V", "A"), training_mean=[2.0, 3.0])
    assert kind.read("V: 1.5; A: 4", {}) == {"values": {"V": 1.5, "A": 4.0}, "valid": True}
    assert kind.read("no idea", {})["values"] is None
    rows = [{"text": "a", "targets": [1.0, 4.0]}, {"text": "b", "targets": [3.0, 1.0]}]
    results = [{"values": {"V": 1.5, "A": 4.0}}, {"values": None}]
    metrics = score_predictions(kind, rows, results, task)
    # by hand: the unreadable answer is scored as the training mean (2, 3)
    errors = [(1.5 - 1.0) ** 2, (4.0 - 4.0) ** 2, (2.0 - 3.0) ** 2, (3.0 - 1.0) ** 2]
    assert metrics["invalid"] == 1 and metrics["n"] == 2
    assert metrics["mse"] == pytest.approx(sum(errors) / len(errors), abs=1e-6)


def test_tagging_in_a_batch_is_right_whatever_side_the_tokenizer_pads(domain_runs):
    """Llama, Mistral and Gemma tokenizers pad on the left: word positions must still match the tags."""
    tags = AdapterSet.load({"tags": domain_runs["tags"]})
    texts = ["John flew", "John Smith flew to Paris on day 3 with Anna from Berlin"]
    alone = [tags.run([("tags", text)])[0]["tags"] for text in texts]
    for side in ("right", "left"):
        tags.tokenizer.padding_side = side
        batched = [p["tags"] for p in tags.run([("tags", text) for text in texts])]
        assert batched == alone, side


def test_a_text_longer_than_training_read_says_it_was_truncated(heads):
    """A head reads the first data.max_seq_length tokens, as in training and eval; the answer says so."""
    short, long = heads.run(
        [("tickets", "my bill"), ("tickets", " ".join(["my bill was charged twice"] * 200))]
    )
    assert "truncated" not in short
    assert long["truncated"] is True and long["input_tokens"] > long["prompt_tokens"]
    assert heads.prepare("tickets", "my bill " * 300).input_tokens > 500  # what the server's limit counts


def test_eval_matrix_scores_evals_sample_and_refuses_mixing_loss_with_task_metrics(domain_runs, tmp_path):
    """--max-rows scores the seeded sample `eval --max-samples` scores (it took the first rows); an sft
    domain (loss) beside a task domain (F1) is refused: the first domain decided how every one was scored."""
    from lora_adapt.data import load_split_rows
    from lora_adapt.domains.matrix import eval_matrix
    from lora_adapt.evaluation.systems import seeded_sample
    from lora_adapt.rundir import read_run

    sources = {"tickets": str(domain_runs["tickets"]), "binary": str(domain_runs["binary"])}
    result = eval_matrix(sources, tmp_path / "m", max_rows=3, echo=lambda _: None)
    assert (
        result["metrics"] == {"tickets": "f1_macro", "binary": "f1_macro"} and result["metric"] == "f1_macro"
    )
    recipe = read_run(domain_runs["tickets"]).recipe
    test = load_split_rows(recipe.data, recipe.task)[0]["test"]
    keep = seeded_sample(len(test), 3, recipe.training.seed)
    assert keep is not None and keep != [0, 1, 2]  # the seeded sample is not the first rows
    scored = eval_matrix({"tickets": sources["tickets"]}, tmp_path / "t", max_rows=3, echo=lambda _: None)
    from lora_adapt.domains.adapter_set import AdapterSet
    from lora_adapt.domains.scores import score_task_rows

    aset = AdapterSet.load({"tickets": sources["tickets"]})
    expected = score_task_rows(aset, "tickets", [test[i] for i in keep], recipe.task)["f1_macro"]
    assert scored["cells"]["tickets"]["tickets"] == {"value": expected, "rows": 3, "split": "test"}
    mixed = [f"chat={domain_runs['chat']}", f"answer={domain_runs['answer']}"]
    refused = cli("eval-matrix", *mixed, "--out", str(tmp_path / "x"))
    assert refused.exit_code == 2 and "one kind of domain" in refused.output, refused.output
    assert not (tmp_path / "x").exists()


def test_compose_cli_takes_its_methods_from_the_library_and_help_imports_no_torch():
    import subprocess
    import sys

    from lora_adapt.cli import compose_cmds
    from lora_adapt.domains import compose

    assert compose_cmds.METHODS is compose.METHODS  # one list: a method added there is offered here
    code = (
        "import sys\nfrom lora_adapt.cli import main\n"
        "for args in ([], ['compose'], ['serve'], ['route', 'build'], ['predict'], ['eval-matrix']):\n"
        "    try: main([*args, '--help'])\n    except SystemExit: pass\n"
        "assert 'torch' not in sys.modules, 'lora-adapt --help imported torch'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_a_composition_of_multi_label_adapters_records_multi_label_in_its_adapter_folder(
    domain_runs, tmp_path
):
    import shutil

    import yaml

    from lora_adapt.domains.tasks import task_kind
    from lora_adapt.modeling.adapted import resolve_adapter

    sources = []
    for name, scale in (("m1", 1.0), ("m2", 2.0)):
        run = copy_run(domain_runs["answer"], tmp_path / name / name, scale=scale)
        recipe = yaml.safe_load((run / A.RESOLVED_RECIPE).read_text())
        recipe["task"]["multi_label"] = True
        (run / A.RESOLVED_RECIPE).write_text(yaml.safe_dump(recipe, sort_keys=False))
        assert read_run(run).multi_label
        sources.append(f"{name}={run}")
    out = tmp_path / "both"
    run_cli("compose", *sources, "--out", str(out))
    assert A.read_json(out / A.ADAPTER_DIR / A.ADAPTER_RECORD)["task"]["multi_label"] is True
    alone = shutil.copytree(out / A.ADAPTER_DIR, tmp_path / "pushed")  # an adapter folder without its run
    info = resolve_adapter(alone, name="both")
    assert info.multi_label and task_kind(info).name == "labels"
