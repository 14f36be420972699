"""What a sweep writes besides its trials: the trials table (CSV and markdown), the best recipe as
runnable YAML, Optuna's plots, and the summary (``sweep.json`` and ``report.md``).

Everything is rebuilt from the study (the SQLite file), so any process, at any time, writes the same
tables; files are written under a temporary name and renamed.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import yaml

from .. import artifacts as A
from ..recipe import Recipe
from ..recipe.sweep import SweepSpec
from ..recipe.trials import recipe_values, resolve_params, set_path
from .space import decode
from .study import interrupted, repeat_of
from .trial import trial_name


def trial_rows(study, recipe: Recipe, sweep: SweepSpec) -> list[dict[str, Any]]:
    """One row per trial: state, objective value, the recipe values it ran with, cost, reason."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        if t.state.name == "WAITING":
            continue
        values = trial_values(t, recipe, sweep)
        cost = t.user_attrs.get("cost") or {}
        rows.append(
            {
                "trial": t.number,
                "state": _state(t),
                "value": t.value if t.value is not None else _last_intermediate(t),
                **{path: _cell(values.get(path)) for path in sweep.space},
                "steps": cost.get("steps", t.user_attrs.get("steps")),
                "evaluations": cost.get("evaluations", len(t.intermediate_values)),
                "before_first_step_s": cost.get("before_first_step_s"),
                "duration_s": cost.get("duration_s"),
                "reason": _reason(t),
                "recipe_values": bool(t.user_attrs.get("recipe_values")),
                "run_dir": t.user_attrs.get("run_dir", ""),
            }
        )
    return rows


def _state(trial) -> str:
    if interrupted(trial):
        return "INTERRUPTED"
    return "REPEAT" if repeat_of(trial) is not None else trial.state.name


def _reason(trial) -> str:
    reason = trial.user_attrs.get("failure") or trial.user_attrs.get("pruned") or ""
    earlier = repeat_of(trial)
    if earlier is None:
        return reason
    if trial.user_attrs.get("running_twin"):
        return f"same values as trial {earlier}, which another process was training: not trained twice"
    outcome = trial.state.name.lower() + (f": {reason}" if reason else "")
    return f"same values as trial {earlier}: its result ({outcome}) reused, not trained"


def trial_values(trial, recipe: Recipe, sweep: SweepSpec) -> dict[str, Any]:
    """The recipe values of a trial (multiples resolved), from its Optuna parameters."""
    from .space import param_name

    sampled = {
        path: decode(spec, trial.params[param_name(path, spec)])
        for path, spec in sweep.space.items()
        if param_name(path, spec) in trial.params
    }
    return resolve_params(recipe, sweep.space, sampled)


def write_tables(folder: Path, rows: list[dict[str, Any]], best: int | None) -> None:
    if not rows:
        return
    columns = list(rows[0])
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    A.atomic_write_text(folder / A.SWEEP_TABLE_CSV, buffer.getvalue())
    shown = [c for c in columns if c not in ("run_dir", "recipe_values")]
    lines = ["| " + " | ".join(shown) + " |", "|" + "---|" * len(shown)]
    for row in rows:
        cells = [_md(row[c]) for c in shown]
        if row.get("recipe_values"):
            cells[0] = f"{row['trial']} (the recipe's values)"
        if row["trial"] == best:
            cells[0] = f"**{cells[0]} (best)**"
        lines.append("| " + " | ".join(cells) + " |")
    A.atomic_write_text(folder / A.SWEEP_TABLE_MD, "\n".join(lines) + "\n")


def write_best_recipe(folder: Path, recipe: Recipe, values: dict[str, Any], header: list[str]) -> Path:
    """The recipe with the best trial's values, named `<name>-best`, without its `sweep` section."""
    raw = recipe_values(recipe)
    for path, value in values.items():
        set_path(raw, path, value)
    raw["name"] = f"{recipe.name}-best"
    Recipe.model_validate(raw)  # the file we write must be a valid recipe
    text = "".join(f"# {line}\n" for line in header) + yaml.safe_dump(
        raw, sort_keys=False, allow_unicode=True
    )
    A.atomic_write_text(folder / A.SWEEP_BEST_RECIPE, text)
    return folder / A.SWEEP_BEST_RECIPE


def write_plots(folder: Path, study) -> dict[str, str]:
    """Optuna's optimization history, parameter importances and parallel coordinates as PNG; a plot that
    cannot be drawn yet (too few finished trials) is named with the reason."""
    import warnings

    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as plots

    drawers: dict[str, Any] = dict(
        zip(
            A.SWEEP_PLOTS,
            (plots.plot_optimization_history, plots.plot_param_importances, plots.plot_parallel_coordinate),
            strict=True,
        )
    )
    skipped = {}
    for name, draw in drawers.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                axes = draw(study)
            figure = _figure(axes)
            figure.set_size_inches(10, 6)
            figure.tight_layout()
            tmp = folder / f".{name}.tmp.png"
            figure.savefig(tmp, dpi=100)
            tmp.replace(folder / name)
        except Exception as exc:  # plotting must never lose a finished sweep
            skipped[name] = f"{type(exc).__name__}: {exc}"
        finally:
            plt.close("all")
    return skipped


def _figure(axes: Any):
    first = axes.flat[0] if hasattr(axes, "flat") else axes
    return first.figure


def write_summary(folder: Path, summary: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    A.atomic_write_json(folder / A.SWEEP_SUMMARY, summary)
    A.atomic_write_text(folder / A.SWEEP_REPORT, render_report(summary, rows))


def render_report(summary: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    best = summary.get("best") or {}
    counts = summary.get("counts", {})
    cost = summary.get("cost", {})
    lines = [
        f"# Sweep {summary['name']}: {summary['method']} search of {summary['objective']['metric']} "
        f"({summary['objective']['direction']}, validation split)",
        "",
        f"- **Trials:** {counts.get('COMPLETE', 0)} complete, {counts.get('PRUNED', 0)} pruned, "
        f"{counts.get('FAIL', 0)} failed, {counts.get('INTERRUPTED', 0)} interrupted, "
        f"{counts.get('REPEAT', 0)} repeats of values already tried (not trained, not counted; budget "
        f"{summary['budget']['trials']} trials"
        + (f", {summary['budget']['minutes']} min" if summary["budget"].get("minutes") else "")
        + ")",
        f"- **Pruning:** {summary['pruning']}; optimizer steps run: {cost.get('steps_total')}",
        f"- **Before the first step:** first trial {cost.get('before_first_step_first_s')} s, later trials "
        f"median {cost.get('before_first_step_later_median_s')} s (prepared data and the loaded base reused)",
    ]
    if best:
        lines += [
            f"- **Best trial:** {best['trial']} — validation {summary['objective']['metric']} "
            f"{_md(best['validation'])}; test {_md((best.get('test') or {}).get(summary['objective']['metric']))} "
            "(scored once, for this trial only)",
            f"- **Best values:** {', '.join(f'`{k}` = {json.dumps(v)}' for k, v in best['values'].items())}",
            f"- **Best recipe:** `{A.SWEEP_BEST_RECIPE}` (`lora-adapt run {A.SWEEP_BEST_RECIPE}`); run: `{best['run_dir']}`",
        ]
    else:
        lines.append("- **Best trial:** none completed yet")
    own = summary.get("recipe_trial")
    if own:
        margin = own.get("best_above_by")
        lines.append(
            f"- **The recipe's own values:** trial {own['trial']}, {own['state'].lower()}, validation "
            f"{_md(own['validation'])}"
            + (f"; the best trial is {_md(margin)} better" if margin is not None else "")
        )
    plots = [p for p in A.SWEEP_PLOTS if p not in summary.get("plots_skipped", {})]
    lines += ["", "Plots: " + (", ".join(f"`{p}`" for p in plots) or "none yet"), "", "## Trials", ""]
    lines.append(Path(A.SWEEP_TABLE_MD).name + " has the full table; the trials, best first:")
    ranked = sorted(
        (r for r in rows if r["state"] == "COMPLETE"),
        key=lambda r: r["value"],
        reverse=summary["objective"]["direction"] == "maximize",
    )
    lines += [""] + [f"{i + 1}. trial {r['trial']}: {_md(r['value'])}" for i, r in enumerate(ranked[:10])]
    return "\n".join(lines) + "\n"


def run_dir_of(folder: Path, number: int) -> Path:
    return folder / A.SWEEP_TRIALS_DIR / trial_name(number)


def _last_intermediate(trial) -> float | None:
    values = trial.intermediate_values
    return values[max(values)] if values else None


def _cell(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, (list, dict)) else value


def _md(value: Any) -> str:
    if value is None or value == "":
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e-3 and value else f"{value:.4f}"
    return str(value).replace("|", "\\|")
