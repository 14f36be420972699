"""YAML (+ ``--set`` overrides) -> a validated, frozen :class:`Recipe`.

Every problem is reported in one pass, each with the file, line, key path, bad value and a fix;
unknown keys get a did-you-mean. Relative paths resolve against the recipe file's folder."""

from __future__ import annotations

import difflib
import re
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from ..errors import RecipeError
from .schema import CROSS_SECTION_SEPARATOR, Recipe
from .trials import raw_space_problems, recipe_problems

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"  # built-in recipes shipped in the package
# Keys holding filesystem paths: resolved against the recipe's folder.
PATH_KEYS = (
    ("data", "path"),
    ("data", "train"),
    ("data", "validation"),
    ("data", "test"),
    ("output", "dir"),
    ("sweep", "dir"),
)
# Keys that may be a path or a Hub id: resolved only when they look like a path.
MAYBE_PATH_KEYS = (("model", "name_or_path"), ("model", "tokenizer"))


def load_recipe(
    path: str | Path, overrides: typing.Sequence[str] = (), sweep_file: str | Path | None = None
) -> Recipe:
    """Read, override, resolve and validate a recipe file; ``sweep_file``: a YAML file whose `sweep`
    section replaces the recipe's (``lora-adapt sweep RECIPE --sweep FILE``)."""
    path = Path(path)
    if not path.is_file() and (EXAMPLES / f"{path}.yaml").is_file():
        path = EXAMPLES / f"{path}.yaml"  # a built-in recipe by name, e.g. `lora-adapt run quickstart`
    if not path.is_file():
        names = ", ".join(sorted(p.stem for p in EXAMPLES.glob("*.yaml")))
        raise RecipeError(
            [f"recipe file not found: {path}"],
            hint=f"check the path, or name a built-in recipe ({names})" if names else "check the path",
        )
    text = path.read_text(encoding="utf-8")
    raw, lines = _parse_yaml(text, str(path))
    if not isinstance(raw, dict):  # checked before --set, which would otherwise start from an empty mapping
        validate_recipe(raw, source=str(path), lines=lines, overridden=set())
    if sweep_file is not None:
        raw, lines = _with_sweep_file(raw, lines, Path(sweep_file))
    raw = apply_overrides(raw, overrides)
    _resolve_paths(raw, path.resolve().parent)  # a symlinked recipe resolves against its real folder
    return validate_recipe(raw, source=str(path), lines=lines, overridden=_override_keys(overrides))


def recipe_from_dict(raw: dict[str, Any], base_dir: Path | None = None, source: str = "<dict>") -> Recipe:
    raw = _deepcopy(raw)
    if base_dir is not None:
        _resolve_paths(raw, Path(base_dir).resolve())
    return validate_recipe(raw, source=source, lines={}, overridden=set())


def validate_recipe(raw: Any, source: str, lines: dict[tuple, int], overridden: set[tuple]) -> Recipe:
    if not isinstance(raw, dict):
        kind = {"list": "a YAML list", "str": "a single string"}.get(type(raw).__name__, type(raw).__name__)
        raise RecipeError(
            [
                f"{source}:1: the recipe is {kind}, but it must be a mapping of sections (name:, model:, data:, ...)"
            ],
            source=source,
            hint="write `key: value` lines at the top level, not `- item` lines; `lora-adapt schema` shows the keys",
        )
    try:
        recipe = Recipe.model_validate(raw)
    except ValidationError as exc:
        errors = _merge_union_branches(exc.errors())
        found = []
        for e in errors:
            if e["type"] == "value_error" and not _clean_loc(e["loc"]):  # the recipe-wide check
                for message in (
                    str(e.get("msg", "")).removeprefix("Value error, ").split(CROSS_SECTION_SEPARATOR)
                ):
                    loc = _mentioned_key(message, lines, overridden)
                    found.append((loc, f"{_where(loc, source, lines, overridden)}: {message}"))
            else:
                found.append((_clean_loc(e["loc"]), _describe(e, raw, source, lines, overridden)))
        found += [
            (loc, f"{_where(loc, source, lines, overridden)}: {message}")
            for loc, message in raw_space_problems(raw)
        ]
        problems = [text for _, text in sorted(found, key=lambda f: _line_of(f[0], lines))]
        raise RecipeError(
            problems, source=source, hint="`lora-adapt schema` prints every key with its type and default"
        ) from None
    located = sorted(recipe_problems(recipe), key=lambda p: _line_of(p[0], lines))
    if located:
        problems = [f"{_where(loc, source, lines, overridden)}: {message}" for loc, message in located]
        raise RecipeError(problems, source=source, hint="`lora-adapt schema` describes every key")
    return recipe


def dump_recipe(recipe: Recipe) -> str:
    """The resolved recipe as YAML (defaults filled in, paths absolute)."""
    return yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def recipe_json_schema() -> dict[str, Any]:
    schema = Recipe.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "lora-adapt recipe"
    return schema


# --- a sweep section from its own file ------------------------------------------------------------


class _Line(int):
    """A line number in another file than the recipe (a `--sweep FILE`): problems there name that file."""

    source: str

    @classmethod
    def of(cls, line: int, source: str) -> _Line:
        out = cls(line)
        out.source = source
        return out


def _with_sweep_file(raw: dict, lines: dict[tuple, int], path: Path) -> tuple[dict, dict[tuple, int]]:
    """The recipe with its `sweep` section replaced by ``path``'s: either a file with a top-level `sweep:`
    or the section's own keys (`space:`, `method:`, ...). A relative `dir` there resolves against its
    folder; each of its keys keeps its line in it."""
    if not path.is_file():
        raise RecipeError([f"sweep file not found: {path}"], hint="check the path given to --sweep")
    section, found = _parse_yaml(path.read_text(encoding="utf-8"), str(path))
    if isinstance(section, dict) and set(section) == {"sweep"}:
        section = section["sweep"]
        found = {loc[1:]: line for loc, line in found.items() if loc[1:]}
    if not isinstance(section, dict):
        raise RecipeError(
            [
                f"{path}:1: a sweep file must be a mapping: the `sweep` section's keys (space:, method:, budget:, ...)"
            ],
            source=str(path),
            hint="see README, Sweeps",
        )
    folder = section.get("dir")
    if isinstance(folder, str) and not Path(folder).expanduser().is_absolute():
        section = {**section, "dir": str(path.resolve().parent / folder)}
    kept = {loc: line for loc, line in lines.items() if loc[:1] != ("sweep",)}
    kept[("sweep",)] = _Line.of(1, str(path))
    kept.update({("sweep", *loc): _Line.of(line, str(path)) for loc, line in found.items()})
    return {**raw, "sweep": section}, kept


# --- YAML with line numbers -------------------------------------------------------------------


def _parse_yaml(text: str, source: str) -> tuple[Any, dict[tuple, int]]:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        raise RecipeError(
            [f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}"], source=source
        ) from None
    lines: dict[tuple, int] = {}
    if node is not None:
        _collect_lines(node, (), lines)
    return (raw if raw is not None else {}), lines


def _collect_lines(node: yaml.Node, prefix: tuple, out: dict[tuple, int]) -> None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = (*prefix, key_node.value)
            out[key] = key_node.start_mark.line + 1
            _collect_lines(value_node, key, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out[(*prefix, i)] = item.start_mark.line + 1
            _collect_lines(item, (*prefix, i), out)


# --- overrides --------------------------------------------------------------------------------


def apply_overrides(raw: Any, overrides: typing.Sequence[str]) -> Any:
    """Apply ``key.path=value`` overrides; values are parsed as YAML (``3``, ``true``, ``[a, b]``)."""
    raw = _deepcopy(raw) if isinstance(raw, dict) else {}
    problems = []
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            problems.append(
                f"--set {item!r}: expected KEY.PATH=VALUE, e.g. --set training.learning_rate=1e-4"
            )
            continue
        parts = key.strip().split(".")
        try:
            parsed = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError:
            parsed = value
        node = raw
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[parts[-1]] = parsed
    if problems:
        raise RecipeError(problems, source="--set")
    return raw


def _override_keys(overrides: typing.Sequence[str]) -> set[tuple]:
    return {tuple(o.partition("=")[0].strip().split(".")) for o in overrides if "=" in o}


def _deepcopy(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _deepcopy(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_deepcopy(v) for v in obj]
    return obj


# --- paths ------------------------------------------------------------------------------------


def _resolve_paths(raw: dict, base: Path) -> None:
    for section, key in PATH_KEYS:
        _resolve_path(raw.get(section), key, base)
    data = raw.get("data")
    sources = data.get("sources") if isinstance(data, dict) else None
    for source in sources if isinstance(sources, list) else ():
        _resolve_path(source, "path", base)
    for section, key in MAYBE_PATH_KEYS:
        sect = raw.get(section)
        if isinstance(sect, dict) and isinstance(sect.get(key), str):
            value = sect[key]
            if value.startswith(("./", "../", "~", "/")) or (base / value).exists():
                p = Path(value).expanduser()
                sect[key] = str(p if p.is_absolute() else (base / p).resolve())


def _resolve_path(node: Any, key: str, base: Path) -> None:
    if isinstance(node, dict) and isinstance(node.get(key), str) and node[key]:
        p = Path(node[key]).expanduser()
        node[key] = str(p if p.is_absolute() else (base / p).resolve())


# --- error messages ---------------------------------------------------------------------------


def _describe(err: Any, raw: dict, source: str, lines: dict[tuple, int], overridden: set[tuple]) -> str:
    loc = _clean_loc(err["loc"])
    dotted = ".".join(str(p) for p in loc) or "(top level)"
    where = _where(loc, source, lines, overridden)
    kind = err["type"]
    value = _value_at(raw, loc)
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        guess = _did_you_mean(str(loc[-1]), allowed)
        fix = f"did you mean '{guess[0]}'?" if guess else f"allowed here: {', '.join(allowed)}"
        return f"{where}: unknown key '{dotted}' — {fix}"
    if kind == "missing":
        return f"{where}: missing required key '{dotted}'"
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        guess = difflib.get_close_matches(str(value), _literal_choices(expected), n=1, cutoff=0.5)
        fix = f" — did you mean '{guess[0]}'?" if guess else ""
        return f"{where}: '{dotted}' = {value!r} is not one of {expected}{fix}"
    if kind == "union":
        return f"{where}: '{dotted}' = {value!r}: {err['msg']}"
    if kind == "value_error":
        msg = str(err.get("msg", "")).removeprefix("Value error, ")
        return f"{where}: {msg}" if not loc else f"{where}: '{dotted}': {msg}"
    return f"{where}: '{dotted}' = {value!r}: {err.get('msg')}"


def _did_you_mean(key: str, allowed: list[str]) -> list[str]:
    # also try without a section-like prefix: 'lora_alpah' -> 'alpah' -> 'alpha'
    for candidate in (key, key.split("_", 1)[-1]):
        guess = difflib.get_close_matches(candidate, allowed, n=1, cutoff=0.6)
        if guess:
            return guess
    return []


def _clean_loc(loc: tuple) -> tuple:
    # pydantic adds union-branch tags such as 'literal[...]', 'tuple[str, ...]' or 'constrained-float' to
    # the location
    return tuple(p for p in loc if not _branch_tag(p))


def _branch_tag(part: Any) -> bool:
    return isinstance(part, str) and ("[" in part or part.startswith(("function-", "constrained-")))


def _merge_union_branches(errors: list[dict]) -> list[dict]:
    """One error per key for a value no branch of a union accepts (`min_steps: many` fails both "an
    integer" and "'auto'"): the branches' reasons joined, instead of one message per branch, one of them
    at a made-up key and one suggesting the value the user did not mean."""
    groups: dict[tuple, list[dict]] = {}
    for err in errors:
        groups.setdefault(_clean_loc(err["loc"]), []).append(err)
    out = []
    for loc, group in groups.items():
        if len(group) > 1 and any(any(_branch_tag(p) for p in e["loc"]) for e in group):
            reasons = [
                f"one of {e.get('ctx', {}).get('expected', '')}" if e["type"] == "literal_error" else e["msg"]
                for e in group
            ]
            out.append({"loc": loc, "type": "union", "msg": "; or ".join(reasons)})
        else:
            out += group
    return out


def _where(loc: tuple, source: str, lines: dict[tuple, int], overridden: set[tuple]) -> str:
    for n in range(len(loc), 0, -1):
        if tuple(loc[:n]) in overridden:
            return "--set " + ".".join(str(p) for p in loc[:n])
        if tuple(loc[:n]) in lines:
            line = lines[tuple(loc[:n])]
            return f"{getattr(line, 'source', source)}:{line}"
    return source


KEY_PATH = re.compile(r"\b[a-z_]+(?:\.[a-z_]+)+\b")


def _mentioned_key(message: str, lines: dict[tuple, int], overridden: set[tuple]) -> tuple:
    """Where a problem that spans sections is located: the first key path it names that the recipe (or a
    --set) gives, else the first it names (its section's line), else nowhere."""
    named = [tuple(m.group().split(".")) for m in KEY_PATH.finditer(message)]
    given = [loc for loc in named if loc in lines or loc in overridden]
    return (given or named or [()])[0]


def _line_of(loc: tuple, lines: dict[tuple, int]) -> int:
    for n in range(len(loc), 0, -1):
        if tuple(loc[:n]) in lines:
            return lines[tuple(loc[:n])]
    return 1 << 30  # overrides and unlocated problems last


def _value_at(raw: Any, loc: tuple) -> Any:
    node = raw
    for part in loc:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            return None
    return node


def _allowed_keys(loc: tuple) -> list[str]:
    model: Any = Recipe
    for part in loc:
        model = _submodel(model, part)
        if model is None:
            return []
    return list(model.model_fields)


def _submodel(model: Any, key: Any) -> type[BaseModel] | None:
    if not (isinstance(model, type) and issubclass(model, BaseModel)) or key not in model.model_fields:
        return None
    annotation = model.model_fields[key].annotation
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _literal_choices(expected: str) -> list[str]:
    return [c.strip().strip("'\"") for c in expected.replace(" or ", ",").split(",") if c.strip()]
