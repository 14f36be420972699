"""Benchmark data: real length-varied instruction data (MedQuAD's NINDS collection, read from its XML
where the shared data folder has it) or, for tests, length-varied rows written here.

Rows are written to the benchmark's work folder, never into the repository."""

from __future__ import annotations

import json
import random
import xml.etree.ElementTree as ET
from pathlib import Path

Rows = list[dict[str, str]]


def is_medquad_dir(path: Path) -> bool:
    return path.is_dir() and any(path.glob("*.xml")) and not (path / "dataset_info.json").exists()


def medquad_rows(folder: Path) -> Rows:
    """instruction = Question, output = Answer, for every QA pair of every MedQuAD XML document."""
    rows = []
    for file in sorted(folder.glob("*.xml")):
        for pair in ET.parse(file).getroot().iter("QAPair"):
            question, answer = pair.findtext("Question"), pair.findtext("Answer")
            if question and answer and question.strip() and answer.strip():
                rows.append({"instruction": question.strip(), "output": " ".join(answer.split())})
    return rows


WORDS = (
    "the patient was seen for headache and the scan showed no bleeding while treatment with rest and fluids "
    "helped most symptoms but some cases need surgery or long term therapy with physical exercise"
).split()


def synthetic_rows(n: int = 64, seed: int = 0) -> Rows:
    """Instruction rows whose answers vary from a few words to a few hundred (like real QA data)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        length = int(rng.lognormvariate(3.5, 0.9)) + 3
        rows.append(
            {
                "instruction": f"Question {i}: what is known about condition {rng.randint(1, 999)}?",
                "output": " ".join(rng.choice(WORDS) for _ in range(length)),
            }
        )
    return rows


def long_rows(rows: Rows, min_words: int, limit: int = 64) -> Rows:
    """Long-context rows: consecutive answers joined until each has `min_words` words (at most `limit`
    rows), so that a benchmark at a long sequence length fills it."""
    out: Rows = []
    words: list[str] = []
    for row in rows * max(1, -(-min_words * limit // max(1, sum(len(r["output"].split()) for r in rows)))):
        words += row["output"].split()
        if len(words) >= min_words:
            out.append({"instruction": f"Summarise document {len(out)}.", "output": " ".join(words)})
            words = []
            if len(out) == limit:
                break
    return out


def write_jsonl(rows: Rows, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def texts(rows: Rows) -> list[str]:
    """The text a tokenizer for these rows is trained on."""
    return [" ".join(str(v) for v in row.values()) for row in rows]
