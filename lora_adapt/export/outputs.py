"""What export writes: the output folder checks and the tokenizer files copied beside an adapter or model."""

from __future__ import annotations

import shutil
from pathlib import Path

from .. import artifacts as A

# Tokenizer files a serving engine or `AutoTokenizer.from_pretrained` reads from an adapter folder.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.jinja",
    "chat_template.json",
    "tokenizer.model",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
)


def copy_tokenizer_files(source: Path, dest: Path) -> list[str]:
    copied = []
    for name in TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, dest / name)
            copied.append(name)
    return copied


def check_output_dir(out_dir: Path, run_dir: Path, overwrite: bool) -> Path:
    """``--out`` of a merge or export of ``run_dir`` (never the run or its adapter folder)."""
    return A.check_output(out_dir, overwrite=overwrite, keep=output_keeps(run_dir))


def output_keeps(run_dir: Path) -> tuple[Path, ...]:
    return (run_dir, run_dir / A.ADAPTER_DIR)
