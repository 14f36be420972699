"""What export writes: the output folder checks and the tokenizer files copied beside an adapter or model."""

from __future__ import annotations

import shutil
from pathlib import Path

from .. import artifacts as A
from ..errors import UsageError

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
    out_dir = Path(out_dir).resolve()
    if out_dir == run_dir or run_dir.is_relative_to(out_dir) or out_dir == run_dir / A.ADAPTER_DIR:
        raise UsageError(
            f"--out {out_dir} would replace the run itself",
            hint=f"choose a new folder, e.g. {run_dir / A.MERGED_DIR}",
        )
    if out_dir.exists() and not overwrite:
        raise UsageError(
            f"{out_dir} already exists", hint="pass --overwrite to replace it, or choose another --out"
        )
    return out_dir
