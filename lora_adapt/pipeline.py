"""The one function that runs a recipe end to end: each stage is a plain call returning a new object.

recipe -> Runtime -> LoadedModel -> PreparedData -> peft model -> TrainResult -> metrics -> run dir
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from . import artifacts as A
from .diskspace import disk_full_errors
from .distributed import Ranks, join
from .errors import HubError, LoraAdaptError
from .recipe import Recipe, dump_recipe
from .recipe.derived import AUTO_CLASSES, LOSS, metric_name
from .rundir_lock import Claim, claim_run, record_resume, resumable_start, start_record
from .runtime import (
    Echo,
    Runtime,
    check_run_space,
    load_model_and_data,
    make_trainer,
    plan_budget_for,
    resolve_runtime,
    rows_per_split,
)

ScoreSplit = Literal["test", "validation"]
Loader = Callable[[Recipe, Runtime, Echo], tuple[Any, Any]]


@dataclass(frozen=True)
class RunResult:
    run_dir: Path | None
    metrics: dict[str, Any]
    manifest: dict[str, Any]


def run(
    recipe: Recipe,
    *,
    resume: bool = False,
    resume_unchecked: bool = False,
    dry_run: bool = False,
    overwrite: bool | None = None,
    callbacks: Sequence[Any] = (),
    echo: Echo = print,
    load: Loader = load_model_and_data,
    score_split: ScoreSplit = "test",
    watch: Sequence[str] = (),
) -> RunResult:
    """Load, prepare, attach, train, evaluate and write ``<output_dir>/<name>/``.

    Under a distributed launcher every process calls this; only the main one checks, locks, writes and
    publishes the run directory (``distributed.Ranks``), and a failure on any process fails the run on all.
    The run's name is locked for the whole call (a second run on it is refused); nothing is loaded before
    the output folder, an existing run of that name and a resume's recipe have been checked.

    ``load(recipe, runtime, echo) -> (loaded, prepared)`` gives the base model and the prepared data
    (a sweep passes one that reuses them across trials). ``score_split="validation"`` scores the
    validation split instead of the test split, without baselines or explanations, and leaves the test
    split untouched (a sweep's trials choose on it). ``watch`` names validation metrics the caller reads
    at each evaluation (``callbacks`` see them in ``on_evaluate``). ``resume_unchecked`` resumes even an
    interrupted run whose checkpoints have no record of their recipe (refused with ``resume`` alone); the
    record and the manifest's resume entry then say the recipe was not checked."""
    resume = resume or resume_unchecked
    runtime = resolve_runtime(recipe)
    ranks = _join(recipe, runtime, echo)
    echo = ranks.main_echo(echo)
    if dry_run:
        loaded, prepared = ranks.main_first("loading the model and data", lambda: load(recipe, runtime, echo))
        return _dry_run_summary(recipe, runtime, loaded, prepared, echo)
    final = A.run_dir(Path(recipe.output.dir).resolve(), recipe.name)
    overwrite = recipe.output.overwrite if overwrite is None else overwrite
    if recipe.output.publish is not None:
        ranks.on_main("checking access to the Hub", lambda: _check_publish_access(recipe))
    with ExitStack() as stack:
        claim = _claim(stack, ranks, final, resume=resume, overwrite=overwrite, echo=echo)
        started = (
            ranks.main_first(
                "checking the resumed recipe",
                lambda: resumable_start(
                    claim.stage, recipe.model_dump(mode="json"), echo, unchecked=resume_unchecked
                ),
            )
            if claim.resuming
            else None
        )
        result = _run_claimed(
            recipe,
            runtime,
            final,
            claim.resuming,
            started,
            callbacks,
            echo,
            ranks,
            _Scoring(load, score_split, tuple(watch)),
        )
        ranks.on_main("checking the training loss", lambda: _refuse_divergence(recipe, result, final))
        if recipe.output.publish is not None:
            ranks.on_main("publishing", lambda: _publish(recipe, final, echo))
    return result


def _claim(
    stack: ExitStack, ranks: Ranks, final: Path, *, resume: bool, overwrite: bool, echo: Echo
) -> Claim:
    """The main process locks the run's name and settles an existing run first; the others then learn
    whether the run is resumed (they never lock, clean or create anything)."""

    def enter() -> Claim:
        return stack.enter_context(
            claim_run(final, resume=resume, overwrite=overwrite, echo=echo, main_process=ranks.is_main)
        )

    claimed = ranks.on_main("checking the run directory", enter)
    return claimed if claimed is not None else enter()


def _resolved_from_data(recipe: Recipe, prepared) -> dict[str, Any]:
    """Settings whose `auto` resolves from the training data, as resolved (kept in the run's start record
    and checked on resume): the class weights of a classifier or tagging head."""
    from .recipe.derived import task_mode
    from .training.heads import class_weight_policy

    if task_mode(recipe.task) != "head":
        return {}
    return {"training.class_weights": class_weight_policy(recipe.training, recipe.task, prepared)[0]}


def _refuse_divergence(recipe: Recipe, result: RunResult, final: Path) -> None:
    divergence = (result.metrics.get("train") or {}).get("divergence")
    if divergence and not recipe.training.divergence.allow:
        from .training.divergence import rise_error

        raise rise_error(divergence, final)


@dataclass(frozen=True)
class _Scoring:
    """How a run loads and what it scores (a sweep trial: shared loads, the validation split, watched metrics)."""

    load: Loader
    score_split: ScoreSplit
    watch: tuple[str, ...]


def _run_claimed(
    recipe: Recipe,
    runtime: Runtime,
    final: Path,
    resuming: bool,
    started: dict[str, Any] | None,
    callbacks: Sequence[Any],
    echo: Echo,
    ranks: Ranks,
    scoring: _Scoring,
) -> RunResult:
    from .modeling.adapters import check_target_modules
    from .training.checkpoints import being_written
    from .training.divergence import check_final_loss, describe_rise

    timings: dict[str, float] = {}
    clock = _Clock(timings)
    with clock("load_s"):
        loaded, prepared = ranks.main_first(
            "loading the model and data", lambda: scoring.load(recipe, runtime, echo)
        )
    check_target_modules(loaded.model, recipe.adapter.target_modules)  # before anything is staged
    need = {"bytes": 0}  # known once the adapter is attached
    metrics: dict[str, Any] = {}
    manifest: dict[str, Any] = {}
    divergence = None
    with (
        ranks.staged_dir(final) as stage,
        disk_full_errors(stage, lambda: need["bytes"], writing=lambda: being_written(stage)),
    ):
        record = start_record(
            stage,
            recipe.model_dump(mode="json"),
            prepared.stats.get("files", {}),
            started,
            _resolved_from_data(recipe, prepared),
        )
        with clock("train_s"):
            model, train_result, lm_metrics, weights = ranks.together(
                "training",
                lambda: _train(
                    recipe,
                    runtime,
                    loaded,
                    prepared,
                    stage,
                    record,
                    resuming,
                    need,
                    callbacks,
                    echo,
                    ranks,
                    scoring.score_split,
                    scoring.watch,
                ),
            )
        divergence = check_final_loss(
            train_result.history,
            head=runtime.head,
            labels=prepared.labels,
            multi_label=recipe.task.multi_label,
            spec=recipe.training,
            precision=runtime.precision.name,
            kept_step=train_result.best_step,  # early stopping keeps that step's model: judge it
        )
        if divergence:
            echo(f"WARNING: {describe_rise(divergence)}")
        with clock("eval_s"):
            trained = _trained_systems(recipe, runtime, loaded, prepared, ranks, echo, scoring.score_split)
            if ranks.is_main:
                task_metrics = _evaluate_task(
                    recipe,
                    runtime,
                    model,
                    loaded,
                    prepared,
                    stage,
                    trained,
                    echo,
                    scoring.score_split,
                    train_result.global_step,
                )
        if ranks.is_main:
            train_record = _train_record(recipe, train_result, stage)
            budget = train_result.extra.get("budget")
            metrics = {
                "train": {**train_record, "divergence": divergence, "budget": budget},
                **lm_metrics,
                **task_metrics,
            }
            timings["total_s"] = round(sum(timings.values()), 2)
            manifest = _write_run(
                recipe,
                runtime,
                loaded,
                prepared,
                model,
                metrics,
                timings,
                stage,
                weights,
                resumes=record["resumes"],
            )
            if recipe.output.merge:
                del model, loaded  # the merge reloads the base unquantized: free the trained copy first
                _merge(recipe, stage, echo)
            _discard_checkpoints(stage)
    echo(f"run finished: {final}" + (" (WARNING: training diverged, see report.md)" if divergence else ""))
    return RunResult(final, metrics, manifest)


# --- stages ----------------------------------------------------------------------------------


def _join(recipe: Recipe, runtime: Runtime, echo: Echo) -> Ranks:
    return join(
        recipe,
        device=runtime.device,
        world_size=runtime.world_size,
        dtype=runtime.dtype,
        precision=runtime.precision.name,
        echo=echo,
    )


def _check_publish_access(recipe: Recipe) -> None:
    from .hub import check_write_access
    from .hub.network import HubNetwork

    pub = recipe.output.publish
    if pub is not None:
        check_write_access(pub.repo_id, endpoint=pub.endpoint, network=HubNetwork(pub.timeout, pub.retries))


def _train(
    recipe: Recipe,
    runtime: Runtime,
    loaded,
    prepared,
    stage: Path,
    record: dict[str, Any],
    resuming: bool,
    need: dict[str, int],
    callbacks,
    echo: Echo,
    ranks: Ranks,
    score_split: ScoreSplit = "test",
    watch: Sequence[str] = (),
):
    """Attach the adapter and train it (with the loss before and after, for generative tasks). Every
    process of a distributed run calls this; checkpoints are discarded by the caller once all are done.
    Returns (model, result, loss metrics, gathered weights: the full state dict when the model is sharded)."""
    from transformers import set_seed

    from .modeling import attach_adapter, parameter_counts
    from .training import early_stopping_callbacks, evaluate_loss, logging_callbacks, run_trainer
    from .training.checkpoints import MarkComplete, last_complete_checkpoint
    from .training.divergence import DivergenceGuard

    set_seed(recipe.training.seed)  # adapter (and new head) initialisation is random: seed it
    model = attach_adapter(
        loaded, recipe.adapter, gradient_checkpointing=recipe.training.gradient_checkpointing
    )
    counts = parameter_counts(model)
    echo(
        f"adapter: {recipe.adapter.method} r={recipe.adapter.rank}, trainable {counts['trainable']:,} of "
        f"{counts['total']:,} parameters ({100 * counts['share']:.3f}%)"
    )
    need["bytes"] = check_run_space(recipe, counts, stage)
    checkpoints = stage / A.CHECKPOINTS_DIR
    guard = DivergenceGuard()
    all_callbacks = [
        MarkComplete(),
        guard,
        *early_stopping_callbacks(recipe.training),
        *(logging_callbacks(recipe.training, stage / A.LOGS_DIR) if ranks.is_main else []),
        *callbacks,
    ]
    budget = plan_budget_for(recipe, runtime, prepared)
    trainer = make_trainer(
        recipe,
        runtime,
        model,
        loaded.tokenizer,
        prepared,
        checkpoints,
        all_callbacks,
        echo=echo,
        watch=watch,
        budget=budget,
    )
    # a sweep trial (score_split validation) never touches the test split, and measures the validation
    # loss after training (not before) in every mode when it is watched
    watch_loss = score_split == "validation" and LOSS in {metric_name(m) for m in watch}
    measure_lm = (runtime.mode == "generative" and recipe.evaluation.perplexity) or watch_loss
    measure_before = measure_lm and score_split == "test"
    scored = ("validation",) if score_split == "validation" else ("validation", "test")
    splits = {name: ds for name in scored if (ds := getattr(prepared, name)) is not None and len(ds)}
    # the loss before training is the base model's; with bias: none training leaves the base untouched, so it
    # is measured after training with the adapter switched off. Evaluating before training would mark the
    # model prepared for evaluation, and a distributed Trainer then trains it without synchronising
    # gradients (accelerate's `_is_accelerate_prepared`): checks.py refuses the one case that needs it.
    before_first = measure_before and recipe.adapter.bias != "none"
    lm_metrics = _lm_losses(trainer, model, splits, "before") if before_first else {}
    last = last_complete_checkpoint(checkpoints, echo) if resuming else None
    if last is not None:
        record.update(record_resume(stage, record, last))
        echo(f"resuming from {last.name}")
    elif resuming:
        echo("note: the interrupted run has no complete checkpoint; training from the start")
    result = run_trainer(
        trainer,
        resume_from=last,
        max_steps_hint=recipe.training.max_steps,
        resume_steps=[r["from_step"] for r in record["resumes"]],
    )
    if guard.tripped is not None:
        raise _diverged(recipe, runtime, guard.tripped, trainer, stage, write=ranks.is_main)
    if measure_lm:
        if measure_before and not before_first:
            lm_metrics = _lm_losses(trainer, model, splits, "before")
        for name, ds in splits.items():
            lm_metrics.setdefault(name, {})["after"] = evaluate_loss(trainer, ds, f"{name}_after")
    result.extra["budget"] = budget.to_json()
    # sharded weights are gathered by all processes together: the main one saves the adapter from them
    weights = trainer.accelerator.get_state_dict(trainer.model) if runtime.sharded else None
    model = trainer.model
    model.lora_adapt_counts = counts
    echo(
        f"trained {result.global_step} steps: train loss {result.final_train_loss} (last logged), "
        f"{result.mean_train_loss} (mean over the run)"
    )
    return model, result, lm_metrics, weights


def _lm_losses(trainer, model, splits, when: str) -> dict[str, dict[str, Any]]:
    """Loss and perplexity of the base model (adapter off) on each split."""
    from .training import evaluate_loss

    with model.disable_adapter():
        return {name: {when: evaluate_loss(trainer, ds, f"{name}_{when}")} for name, ds in splits.items()}


def _trained_systems(
    recipe: Recipe, runtime: Runtime, loaded, prepared, ranks: Ranks, echo: Echo, score_split: ScoreSplit
):
    """The baselines that are trained models, for evaluation to score. One process trains them when it
    scores them; several train them together now (evaluation then runs on the main process alone). A
    run scored on its validation split (a sweep trial) has no baselines."""
    if recipe.task.type == "sft" or not recipe.evaluation.enabled or score_split == "validation":
        return {}
    from .full_finetune import trained_baselines

    systems = trained_baselines(recipe, runtime, loaded.tokenizer, prepared, echo)
    if not ranks.distributed:
        return systems
    wanted = {name: train for name, train in systems.items() if name in recipe.evaluation.baselines}
    return {
        name: _ready(ranks.together(f"training the {name} baseline", train)) for name, train in wanted.items()
    }


def _discard_checkpoints(stage: Path) -> None:
    from .training import discard_checkpoints

    discard_checkpoints(stage / A.CHECKPOINTS_DIR)


def _ready(value):
    return lambda: value


def _diverged(
    recipe: Recipe, runtime: Runtime, tripped: dict[str, Any], trainer, stage: Path, *, write: bool
):
    """Keep the diverged run's record beside its checkpoints (``write``: on the main process) and return
    the error that ends the run."""
    from .training.divergence import trip_error, trip_record
    from .training.runner import clean_history

    record = trip_record(
        tripped,
        clean_history(trainer.state.log_history),
        recipe.training,
        runtime.precision.name,
        stage / A.CHECKPOINTS_DIR,
    )
    path = stage / A.DIVERGENCE
    if write:
        A.atomic_write_json(path, record)
    return trip_error(record, path)


def _evaluate_task(
    recipe: Recipe,
    runtime: Runtime,
    model,
    loaded,
    prepared,
    stage: Path,
    trained,
    echo: Echo,
    score_split: ScoreSplit = "test",
    steps: int | None = None,
) -> dict[str, Any]:
    if recipe.task.type == "sft" or not (recipe.evaluation.enabled or score_split == "validation"):
        return {}
    from .evaluation import evaluate_task

    # a sweep trial scores the validation split: no baselines, no explanations, the test split untouched
    trial = score_split == "validation"
    metrics = evaluate_task(
        recipe=recipe,
        mode=runtime.mode,
        model=model,
        tokenizer=loaded.tokenizer,
        prepared=prepared,
        run_dir=stage,
        echo=echo,
        split=score_split,
        baselines=() if trial else None,
        trained=trained,
        trained_steps=steps,
    )
    if trial:
        return metrics
    from .explain import report_explanations

    tfidf = (metrics.get("baselines") or {}).get("tfidf_logreg")
    explanations = report_explanations(recipe, model, loaded.tokenizer, prepared, tfidf=tfidf, echo=echo)
    return {**metrics, "explanations": explanations} if explanations is not None else metrics


def _train_record(recipe: Recipe, result, stage: Path) -> dict[str, Any]:
    """metrics.json's `train` block with the watched metric, the overfitting check and the curves PNG."""
    from .evaluation.curves import curve_metric, overfitting_warning, save_learning_curves
    from .recipe.derived import headline_metric

    record = result.to_json()
    stopping = recipe.training.early_stopping
    preferred = stopping.metric if stopping is not None else headline_metric(recipe.task)
    metric = curve_metric(record["history"], preferred)
    record["watched_metric"] = metric
    record["overfitting"] = overfitting_warning(record["history"], metric, result.best_step)
    save_learning_curves(record["history"], stage / A.LEARNING_CURVES_PNG, metric, result.best_step)
    return record


def _write_run(
    recipe: Recipe,
    runtime: Runtime,
    loaded,
    prepared,
    model,
    metrics: dict[str, Any],
    timings: dict[str, float],
    stage: Path,
    weights: dict[str, Any] | None = None,
    *,
    resumes: list[dict[str, Any]],
) -> dict[str, Any]:
    from .evaluation.report import render_report
    from .export.checks import check_adapter_weights
    from .hub import render_model_card
    from .rundir import adapter_record, inference_record

    adapter_dir = stage / A.ADAPTER_DIR
    model.save_pretrained(adapter_dir, state_dict=weights)  # weights: gathered from a sharded model
    loaded.tokenizer.save_pretrained(adapter_dir)
    check_adapter_weights(adapter_dir)
    manifest = _manifest(recipe, runtime, loaded, prepared, model, timings)
    manifest["resumes"] = resumes  # each: {from_step, checkpoint, utc[, recipe_checked: false]}; [] in one go
    resolved = dump_recipe(recipe)
    manifest["recipe_sha256"] = A.sha256_text(resolved)
    record = adapter_record(
        manifest,
        multi_label=recipe.task.multi_label,
        inference=inference_record(recipe, prepared.stats),
    )
    A.atomic_write_json(adapter_dir / A.ADAPTER_RECORD, record)
    A.atomic_write_text(stage / A.RESOLVED_RECIPE, resolved)
    A.atomic_write_json(stage / A.MANIFEST, manifest)
    A.atomic_write_json(stage / A.METRICS, metrics)
    A.atomic_write_text(stage / A.REPORT, render_report(manifest, metrics))
    A.atomic_write_text(stage / A.MODEL_CARD, render_model_card(stage))
    return manifest


def _merge(recipe: Recipe, stage: Path, echo: Echo) -> None:
    import gc

    from .export import merge_run
    from .export.merge import describe
    from .hub import render_model_card

    gc.collect()
    report = merge_run(stage, stage / A.MERGED_DIR, dtype=recipe.output.merge_dtype, echo=echo)
    for line in describe(report):
        echo(line)
    A.atomic_write_text(stage / A.MODEL_CARD, render_model_card(stage))


def _manifest(recipe: Recipe, runtime: Runtime, loaded, prepared, model, timings) -> dict[str, Any]:
    from .manifest import (
        config_sha256,
        device_info,
        package_versions,
        tokenizer_sha256,
        utc_now,
        weights_fingerprint,
    )
    from .modeling.identity import local_files

    files = local_files(recipe.model)

    base = loaded.model.config if not hasattr(model, "get_base_model") else model.get_base_model().config
    cfg = base.to_dict()
    counts = getattr(model, "lora_adapt_counts", {})
    a = recipe.adapter
    return {
        "lora_adapt_version": package_versions()["lora-adapt"],
        "created_utc": utc_now(),
        "name": recipe.name,
        "task": {
            "type": recipe.task.type,
            "mode": runtime.mode,
            "head": runtime.head,
            "labels": list(prepared.labels or []),
            "pooling": loaded.pooling,
            "multi_label": recipe.task.multi_label,
            **_task_inputs(prepared.stats),
        },
        "base_model": {
            "name_or_path": recipe.model.name_or_path,
            "hub_id": loaded.source.hub_id,
            "revision": loaded.source.revision,
            "resolved_path": loaded.source.load_path,
            "kind": loaded.source.kind,
            "model_type": cfg.get("model_type"),
            "architectures": cfg.get("architectures"),
            "auto_class": AUTO_CLASSES[runtime.head],
            "config_sha256": config_sha256(cfg),
            "tokenizer_sha256": tokenizer_sha256(files) if files else None,
            "weights_fingerprint": weights_fingerprint(files) if files else None,
            "num_parameters": counts.get("total"),
            "trust_remote_code": recipe.model.trust_remote_code,
        },
        "quantization": recipe.quantization.model_dump(mode="json"),
        "adapter": {
            "method": a.method,
            "rank": a.rank,
            "alpha": a.alpha,
            "scaling": a.scaling,
            "target_modules": a.target_modules
            if isinstance(a.target_modules, str)
            else list(a.target_modules),
            "modules_to_save": sorted(_modules_to_save(model)),
            "trainable_params": counts.get("trainable"),
            "total_params": counts.get("total"),
            "trainable_share": counts.get("share"),
        },
        "runtime": runtime.to_json() | {"device_info": device_info(runtime.device)},
        "versions": package_versions(),
        "data": {
            "files": prepared.stats.get("files", {}),
            "rows": rows_per_split(prepared),
            **({"sources": prepared.stats["sources"]} if prepared.stats.get("sources") else {}),
            "stats": prepared.stats,
        },
        "seed": recipe.training.seed,
        "timings": timings,
    }


def _task_inputs(stats: dict[str, Any]) -> dict[str, Any]:
    """What a reload needs beyond labels: regression targets (names, training stats, the head's scaling to
    undo) and the text columns of sentence pairs."""
    extras: dict[str, Any] = {}
    if stats.get("targets"):
        extras["targets"] = stats["targets"]
    if stats.get("inputs"):
        extras["inputs"] = stats["inputs"]
    return extras


def _modules_to_save(model) -> set[str]:
    config = getattr(model, "peft_config", {}).get("default")
    return set(getattr(config, "modules_to_save", None) or [])


def _publish(recipe: Recipe, final: Path, echo: Echo) -> None:
    from .hub import push_run
    from .hub.network import HubNetwork

    pub = recipe.output.publish
    if pub is None:
        return
    try:
        info = push_run(
            final,
            pub.repo_id,
            private=pub.private,
            revision=pub.revision,
            merged=pub.merged,
            endpoint=pub.endpoint,
            network=HubNetwork(pub.timeout, pub.retries),
        )
    except LoraAdaptError as exc:
        # The run is complete and stays; only the push failed. Keep the failure's own exit code (2: the
        # user must fix a token, repo id or card; 1: the Hub or the network) and say how to push again.
        fix = f"{exc.hint.rstrip('.')}; then" if exc.hint else "fix the cause, then"
        raise HubError(
            f"the run itself is complete at {final}; only publishing it to {pub.repo_id} failed: "
            f"{exc.message}",
            hint=f"{fix} retry just the push (no retraining): `{_push_command(final, pub)}`",
            exit_code=exc.exit_code,
        ) from exc
    echo(f"published: {info}")


def _push_command(final: Path, pub) -> str:
    """The `lora-adapt push` command that repeats the recipe's ``output.publish`` for the run at ``final``."""
    import shlex

    words = ["lora-adapt", "push", str(final), "--repo-id", pub.repo_id]
    if pub.revision:
        words += ["--revision", pub.revision]
    if pub.merged:
        words.append("--merged")
    if not pub.private:
        words.append("--public")
    if pub.endpoint:
        words += ["--endpoint", pub.endpoint]
    defaults = type(pub).model_fields
    for name in ("timeout", "retries"):
        if getattr(pub, name) != defaults[name].default:
            words += [f"--{name}", str(getattr(pub, name))]
    return shlex.join(words)


def _dry_run_summary(recipe: Recipe, runtime: Runtime, loaded, prepared, echo: Echo) -> RunResult:
    from .modeling import parameter_counts

    counts = parameter_counts(loaded.model)
    budget = plan_budget_for(recipe, runtime, prepared)  # what the run would train, min_steps included
    note = budget.describe(recipe.training.resolved_min_steps(head=runtime.mode == "head"))
    if note:
        echo(note)
    echo(
        f"dry run: {counts['total']:,} base parameters; {len(prepared.train)} training rows, "
        f"effective batch {runtime.effective_batch_size}, {budget.planned_steps} optimizer steps; nothing written"
    )
    return RunResult(None, {}, {"runtime": runtime.to_json(), "data": prepared.stats})


class _Clock:
    """``with clock("train_s"): ...`` records the block's wall time in seconds."""

    def __init__(self, timings: dict[str, float]):
        self.timings = timings

    @contextmanager
    def __call__(self, key: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[key] = round(time.perf_counter() - start, 2)
