"""The recipe schema: frozen, typed specs with every default in one place.

Each section is one concern and each decision is one enum. Nothing downstream reads a raw dict:
the loader turns YAML into a :class:`Recipe` and stages receive its frozen sections. Values that
are *derived* (resolved dtype, device, effective batch, task mode) are computed once into a
separate object by the pipeline and never written back here.

No torch import here: ``lora-adapt validate`` must answer in about a second.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from .mixing import MixingSpec, SourceSpec, source_problems
from .spec import FileFormat, Spec
from .sweep import SweepSpec

TaskType = Literal[
    "sft", "classification", "regression", "token_classification", "relation_classification", "extraction"
]
TargetScaling = Literal["standardize", "none"]
ShortRows = Literal["error", "pad"]
TaskMode = Literal["auto", "head", "generative"]
Pooling = Literal["auto", "model", "cls", "mean", "entity_start"]
Quantization = Literal["none", "nf4", "fp4", "int8"]
DType = Literal["auto", "bf16", "fp16", "fp32"]
Device = Literal["auto", "cpu", "cuda", "mps"]
AttnImpl = Literal["auto", "sdpa", "eager", "flash_attention_2"]
AdapterMethod = Literal["lora", "dora"]
LoraScaling = Literal["standard", "rslora"]
DataFormat = Literal["auto", "completion", "prompt_completion", "instruction", "chat"]
LossOn = Literal["completion", "all"]
Scheduler = Literal[
    "linear", "cosine", "constant", "constant_with_warmup", "cosine_with_restarts", "polynomial"
]
Optimizer = Literal[
    "adamw_torch", "adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit", "adafactor", "sgd", "lion_8bit"
]
ReportTo = Literal["none", "tensorboard", "wandb"]
LossPath = Literal["auto", "chunked", "trl", "liger"]
Baseline = Literal["majority", "tfidf_logreg", "base_model", "full_finetune"]
OverlengthPolicy = Literal["drop", "truncate"]
Strategy = Literal["ddp", "fsdp", "deepspeed"]
FsdpSharding = Literal["full_shard", "shard_grad_op"]
AUTO_MIN_STEPS_HEAD = 300
"""`training.min_steps: auto` when a classifier head is trained."""
AUTO_HEAD_LR_RATIO = 10.0
"""`training.head_lr_ratio: auto` for classification and regression heads (1 for tagging and relation heads)."""
AUTO_WEIGHTS_MAJORITY_SHARE = 0.94
"""`training.class_weights: auto` weights a tagging head's classes (`sqrt_balanced`) when the most frequent
tag is at least this share of the training split's tags."""
HEADS_AT_THE_RATE = ("token_classification", "relation_classification")
"""Heads that read features the adapter must first form (per-token entity cues, entity-marker states):
`head_lr_ratio: auto` is 1 for them."""

# Canonical column names a recipe may map from its own field names.
CANONICAL_COLUMNS = (
    "text",
    "prompt",
    "completion",
    "instruction",
    "input",
    "output",
    "messages",
    "system",
    "label",
    "tokens",
    "tags",
    "id",
    "text_a",
    "text_b",
    "e1_start",
    "e1_end",
    "e2_start",
    "e2_end",
    "e1_type",
    "e2_type",
)
"""``text_a`` is another name for ``text`` (the first text of a pair); ``text_b`` makes a row a sentence pair.
``e1_start`` ... ``e2_type``: relation entities given as character offsets (end exclusive) instead of markers."""


class TaskSpec(Spec):
    type: TaskType = "sft"
    """What the adapter learns: free-text SFT, or a domain task scored with accuracy/P/R/F1 (classification,
    tagging, relations, extraction) or with MSE/Pearson (regression: one or several numeric targets)."""
    mode: TaskMode = "auto"
    """`head`: a classification head + LoRA; `generative`: the LM answers with the label. `auto`: head
    for classification tasks, generative for sft and extraction."""
    labels: tuple[str, ...] | None = None
    """The label set. Read from the training data when not given."""
    multi_label: bool = False
    """Classification only: each row may carry several labels (a list, or a string split on `label_separator`)."""
    label_separator: str = "|"
    negative_label: str | None = None
    """Relation classification: the catch-all label left out of macro-F1 (SemEval's `Other`). In any binary
    task it also names the negative class, so the other one is the positive class whose F1 is reported."""
    targets: tuple[str, ...] | None = None
    """Regression: the numeric columns to predict, e.g. `[V, A, D]` (dotted/indexed paths allowed). Default:
    the single column `label` (map yours with data.columns)."""
    target_scaling: TargetScaling | None = None
    """Regression in head mode: `standardize` trains the head on z-scored targets (training split mean and
    standard deviation, recorded with the adapter) and undoes it at prediction time; `none` trains on raw
    values. Null (the default): `standardize` for a regression head."""
    fields: tuple[str, ...] | None = None
    """Extraction: the JSON fields the model must produce (scored field by field)."""
    pooling: Pooling = "auto"
    """Head mode, classification and relation classification: the vector the classifier reads. `mean`
    (masked mean of the hidden states), `cls` (the raw [CLS] state), `entity_start` (the states at
    `<e1>` and `<e2>`, concatenated), `model` (the architecture's own head: BERT's pooled [CLS], a
    decoder's last token). `auto`: `entity_start` for relations, else the pooling a
    sentence-transformers checkpoint was trained with, else `model`. Custom poolings need a
    BERT-family encoder."""

    @field_validator("pooling")
    @classmethod
    def _pooling_fits_task(cls, pooling: str, info: ValidationInfo) -> str:
        """A field validator (type and mode are checked first) so errors point at task.pooling itself."""
        kind, mode = info.data.get("type"), info.data.get("mode")
        if pooling != "auto" and (
            kind not in ("classification", "regression", "relation_classification") or mode == "generative"
        ):
            raise ValueError(
                f"'{pooling}' applies to classification, regression and relation_classification in head "
                "mode only; remove task.pooling"
            )
        if pooling == "entity_start" and kind != "relation_classification":
            raise ValueError(
                "'entity_start' needs task.type 'relation_classification' (sentences with <e1>/<e2> "
                "markers); use mean or cls"
            )
        return pooling

    @model_validator(mode="after")
    def _mode_fits_type(self) -> TaskSpec:
        if self.type in ("sft", "extraction") and self.mode == "head":
            raise ValueError(
                f"task.mode 'head' does not apply to task.type '{self.type}'; use 'generative' or 'auto'"
            )
        if self.multi_label and self.type != "classification":
            raise ValueError("task.multi_label is only for task.type 'classification'")
        if self.labels is not None and len(set(self.labels)) != len(self.labels):
            raise ValueError("task.labels has duplicates")
        if self.targets is not None and self.type != "regression":
            raise ValueError("task.targets is only for task.type 'regression' (use task.labels for classes)")
        if self.targets is not None and (not self.targets or len(set(self.targets)) != len(self.targets)):
            raise ValueError("task.targets must name one or more distinct columns")
        if self.type == "regression" and self.labels is not None:
            raise ValueError(
                "task.labels does not apply to regression; name the numeric columns in task.targets"
            )
        if self.target_scaling is not None and (self.type != "regression" or self.mode == "generative"):
            raise ValueError("task.target_scaling applies to regression in head mode only; remove it")
        return self


class ModelSpec(Spec):
    name_or_path: str
    """A Hugging Face Hub id (`Qwen/Qwen2.5-0.5B-Instruct`), a local directory, or
    `package:<python_package>` for weights shipped inside an installed package."""
    revision: str | None = None
    """Hub revision (branch, tag or commit) to pin."""
    trust_remote_code: bool = False
    allow_pickle: bool = False
    """Load `.bin`/`.pt` pickle weights. Off: only safetensors are loaded."""
    dtype: DType = "auto"
    """Weights dtype. `auto`: bf16 where the hardware has it, else fp16 on GPU, fp32 on CPU."""
    device: Device = "auto"
    attn_implementation: AttnImpl = "auto"
    tokenizer: str | None = None
    """Tokenizer path or id when it differs from the model's."""


class QuantizationSpec(Spec):
    method: Quantization = "none"
    """`nf4` (QLoRA), `fp4`, `int8` (bitsandbytes), or `none` for full precision."""
    double_quant: bool = True
    """4-bit only: quantize the quantization constants too (0.516 byte/param for NF4)."""
    compute_dtype: DType = "auto"
    """4-bit only: the dtype matmuls run in. `auto` follows model.dtype."""

    @model_validator(mode="after")
    def _fourbit_only(self) -> QuantizationSpec:
        if (
            self.method in ("none", "int8")
            and "compute_dtype" in self.model_fields_set
            and self.compute_dtype != "auto"
        ):
            raise ValueError(f"quantization.compute_dtype only applies to 4-bit methods, not '{self.method}'")
        return self


class AdapterSpec(Spec):
    method: AdapterMethod = "lora"
    """`lora`, or `dora` (weight-decomposed LoRA)."""
    rank: int = Field(16, ge=1, le=4096)
    alpha: float = Field(32, gt=0)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: Literal["all-linear"] | tuple[str, ...] = "all-linear"
    """`all-linear` (every linear layer but the output head) or a list of module names."""
    scaling: LoraScaling = "standard"
    """`standard`: alpha/r; `rslora`: alpha/sqrt(r) (rank-stabilised)."""
    modules_to_save: tuple[str, ...] = ()
    """Extra modules trained in full and saved with the adapter (e.g. `lm_head`, `embed_tokens`)."""
    bias: Literal["none", "lora_only", "all"] = "none"
    init: Literal["default", "gaussian", "pissa", "olora"] = "default"


class SplitSpec(Spec):
    validation: float = Field(0.1, ge=0, lt=1)
    """Share of rows held out for validation when no validation file is given."""
    test: float = Field(0.1, ge=0, lt=1)
    """Share of rows held out for test when no test file is given."""
    seed: int = 42
    stratify: bool = True
    """Classification: keep label proportions in every split."""
    column: str | None = None
    """Take each row's split from this column of `data.path` (values `train`, `validation`/`valid`/`dev`,
    `test`) instead of carving it by ratio, e.g. EmoBank's `split` column."""

    @model_validator(mode="after")
    def _shares(self) -> SplitSpec:
        if self.validation + self.test >= 1:
            raise ValueError(
                f"data.split.validation + data.split.test must be < 1 (got {self.validation + self.test})"
            )
        return self


class CleaningSpec(Spec):
    normalize_unicode: bool = True
    """NFC unicode normalisation."""
    normalize_whitespace: bool = True
    """Strip ends, turn non-breaking/odd spaces into plain ones, collapse runs of spaces (newlines kept)."""
    drop_empty: bool = True
    deduplicate: bool = True
    """Remove exact duplicates, within and across splits (test rows never leak into training)."""
    overlength: OverlengthPolicy = "drop"
    """Rows longer than data.max_seq_length tokens: `drop` them (counted) or `truncate` them."""


class DataSpec(Spec):
    path: Path | None = None
    """One file or directory, split into train/validation/test by `split`."""
    train: Path | None = None
    validation: Path | None = None
    test: Path | None = None
    file_format: FileFormat = "auto"
    """`auto` picks by extension (.jsonl .json .csv .tsv .parquet .txt .conll; a directory = saved `datasets`)."""
    format: DataFormat = "auto"
    """SFT layout: raw `completion` text, `prompt_completion`, `instruction` (instruction/input/output), `chat`
    messages. `auto` detects it from the columns."""
    columns: dict[str, str] = Field(default_factory=dict)
    """Map canonical names (text, text_a, text_b, prompt, completion, instruction, input, output, messages,
    label, tokens, tags, e1_start ... e2_type) to your column names, e.g. `{text: body, label: category}`.
    A name may be a dotted/indexed path into nested fields: `{label: relation[0].relation_type}`."""
    column_names: tuple[str, ...] | None = None
    """Names for the columns of a headerless csv/tsv file, e.g. `[label, text]`."""
    short_rows: ShortRows = "error"
    """csv/tsv rows with fewer fields than columns: `error` (naming the line), or `pad` the missing trailing
    columns with empty values (ragged files, e.g. STS-B rows carry 7 or 9 fields)."""
    label_delimiter: str | None = None
    """One-example-per-line text files whose label follows the sentence after this delimiter
    (`<sentence>@<label>`): each line is split on the *last* delimiter into text and label."""
    chat_template: str | None = None
    """A named chat template (`chatml`, `llama3`, `zephyr`) used when the tokenizer has none, or to override it."""
    system_prompt: str | None = None
    prompt_template: str | None = None
    """Generative tasks: how an example is put to the model, with `{text}` (and `{labels}`)."""
    max_seq_length: int = Field(512, ge=8)
    loss_on: LossOn = "completion"
    """`completion`: loss on completions / assistant turns only; `all`: on every token."""
    split: SplitSpec = SplitSpec()
    cleaning: CleaningSpec = CleaningSpec()
    max_samples: int | None = Field(None, ge=1)
    """Keep at most this many rows per split (after cleaning), for quick runs."""
    max_train_samples: int | None = Field(None, ge=1)
    """Keep at most this many *training* rows (after cleaning and splitting; validation and test keep
    every row): a seeded sample, stratified by label for classification and relations (each label
    keeps its share, and at least one row while the cap allows), a plain seeded sample otherwise.
    For learning curves and small-data runs."""
    sample_seed: int | None = None
    """Seed of the rows `max_samples` / `max_train_samples` keep. Default: `data.split.seed`. Change it
    to draw another sample while validation and test stay the same split."""

    @field_validator("max_train_samples")
    @classmethod
    def _below_max_samples(cls, limit: int | None, info: ValidationInfo) -> int | None:
        every = info.data.get("max_samples")
        if limit is not None and every is not None and limit >= every:
            raise ValueError(
                f"{limit} has no effect: data.max_samples ({every}) already caps every split, the "
                "training split included; remove one of them"
            )
        return limit

    @field_validator("sample_seed")
    @classmethod
    def _seeds_a_sample(cls, seed: int | None, info: ValidationInfo) -> int | None:
        if (
            seed is not None
            and info.data.get("max_samples") is None
            and info.data.get("max_train_samples") is None
        ):
            raise ValueError(
                "seeds only the rows data.max_samples / data.max_train_samples keep; set one of them, "
                "or remove data.sample_seed"
            )
        return seed

    cache: bool = True
    """Keep the prepared data in the content-addressed cache (`$LORA_ADAPT_DATA_CACHE`, default
    `~/.cache/lora-adapt/data`) and reuse it when the files, tokenizer and data settings are the same:
    reruns, `--resume`, sweep trials and `eval` skip preparation. `lora-adapt data prepare` fills it."""
    sources: tuple[SourceSpec, ...] | None = None
    """Several training sources mixed into one training set (instead of `path` / `train`), by
    weights or ratios, deduplicated across sources; validation and test are carved from the mix by
    `split` unless `validation` / `test` files are given. Per-source counts go to the manifest and
    the report."""
    mixing: MixingSpec = MixingSpec()
    """How `sources` are mixed."""

    @model_validator(mode="after")
    def _sources(self) -> DataSpec:
        given = [key for key in ("path", "train", "sources") if getattr(self, key) is not None]
        if not given:
            raise ValueError(
                "data needs `path` (one source, split by ratio), `train` (explicit split files) or "
                "`sources` (several sources mixed)"
            )
        if len(given) > 1:
            raise ValueError(
                f"data.{' and data.'.join(given)} are exclusive: give one source to split, explicit "
                "files, or sources to mix"
            )
        if self.sources is not None:
            problems = source_problems(self.sources, self.mixing)
            if problems:
                raise ValueError("; ".join(problems))
        elif self.mixing != MixingSpec():
            raise ValueError("data.mixing applies to data.sources; remove it or list the sources")
        unknown = sorted(set(self.columns) - set(CANONICAL_COLUMNS))
        if unknown:
            raise ValueError(
                f"data.columns has unknown canonical names {unknown}; known: {list(CANONICAL_COLUMNS)}"
            )
        if "text" in self.columns and "text_a" in self.columns:
            raise ValueError("data.columns maps both 'text' and 'text_a' (the same column); keep one")
        if self.split.column is not None and self.path is None:
            raise ValueError("data.split.column splits the rows of data.path; with data.train files drop it")
        return self


class EarlyStoppingSpec(Spec):
    patience: int = Field(3, ge=1)
    """Evaluations without improvement before stopping. The best adapter is kept (and the step it
    came from is recorded)."""
    threshold: float = Field(0.0, ge=0)
    """Smallest change of the metric that counts as an improvement."""
    metric: str = "loss"
    """The validation metric watched: `loss`, or any metric the task's evaluation reports
    (`f1_macro`, `accuracy`, `f1_macro_official`, `f1`, `field_f1`, ...; an `eval_` prefix is
    accepted). Lower is better for `loss`, higher for the others. Generative tasks score
    `evaluation.validation_max_samples` validation rows at each evaluation to compute a task metric."""


class DivergenceSpec(Spec):
    allow: bool = False
    """Finish with exit 0 even when the final training loss ends above the starting loss (or, for a
    classifier head, above the chance loss ln K) by more than `margin`; the warning stays in report.md.
    A NaN or infinite loss or gradient always stops the run."""
    margin: float = Field(0.1, ge=0, le=10)
    """How far above the starting / chance loss (relative) the final logged loss may end before the run
    counts as diverged. The first logged loss is one batch and the last a mean over `logging_steps`
    batches, so a few percent either way is noise."""


class TrainingSpec(Spec):
    epochs: float = Field(3, gt=0)
    max_steps: int | None = Field(None, ge=1)
    """Stop after this many optimizer steps (overrides epochs)."""
    min_steps: Annotated[int, Field(ge=0)] | Literal["auto"] = "auto"
    """At least this many optimizer steps: on small data whole epochs are added until the run has them
    (a fresh head and adapter need a few hundred updates; 300 rows x 3 epochs give ~60), and validation
    runs as often as `epochs` asked, spread over the run. `auto`: 300 with a classifier head, 0 for
    generative tasks (a language model memorises small data shown many times). 0: off."""
    learning_rate: float = Field(2e-4, gt=0, lt=1)
    head_lr_ratio: Annotated[float, Field(gt=0, le=1000)] | Literal["auto"] = "auto"
    """Head mode: the new, randomly initialised classifier head trains at this multiple of
    `learning_rate` (the full fine-tuning baseline applies it to its own rate). 1: the same rate. `auto`:
    10 for classification and regression heads (a head over sentence features that are already good
    learns in few steps: BANKING77 at 250 rows +19 points); 1 for tagging and relation heads, which read
    per-token and entity-marker states the adapter must first learn to form (a fast head fits the
    training rows first: SemEval at 500 rows, 10x cost 6.6 points; CoNLL-2003 at 250 / 500 / 1,000
    sentences, 1x gained 2.8 / 0.7 / 1.4 points, one seed each)."""
    lora_plus_ratio: float = Field(1.0, gt=0, le=1000)
    """LoRA+ (Hayou et al., 2024): the B matrices train at this multiple of `learning_rate`. 1: plain LoRA."""
    class_weights: Literal["auto", "none", "balanced", "sqrt_balanced"] = "auto"
    """Head mode, single-label and tagging: weight each class's loss by its inverse training frequency
    (`balanced`: n / (classes x count)), its square root (`sqrt_balanced`, milder), or not (`none`).
    `auto`: for tagging, `sqrt_balanced` when the most frequent tag (`O`) is at least 94% of the
    training split's tags and `none` below that; `none` for other heads. Measured on CoNLL-2003 variants
    at 500 sentences (LoRA entity F1 with weights minus without, one seed each): `O` at 97.5% +13.5
    points, 95.3% +4.9, 93.6% +0.3, 92.8% -2.0, 88.8% +0.7, 82.7% (CoNLL as it is) -1.3, and on the full
    set -1.9."""
    scheduler: Scheduler = "cosine"
    warmup_ratio: float = Field(0.03, ge=0, lt=1)
    batch_size: int = Field(8, ge=1)
    """Per-device micro-batch size."""
    eval_batch_size: int | None = Field(None, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    packing: bool = False
    """Pack several short examples into each sequence of `data.max_seq_length` (SFT only; TRL's best-fit
    packing, each example attending only to itself). Under SDPA or eager attention (any CPU; GPUs without
    flash-attn) each packed sequence stays its own batch row; under flash attention a micro-batch becomes
    one row read by its variable-length kernels (TRL's padding-free layout)."""
    loss_path: LossPath = "auto"
    """How generative training scores tokens over the vocabulary, never holding the full
    `[tokens, vocab]` logits: `chunked` (lora-adapt's, any device: one chunk of logits at a time,
    gradients formed as it goes), `trl` (TRL's fused LM head: Triton kernels on CUDA, a slower torch
    fallback elsewhere), `liger` (Liger-Kernel's fused linear cross-entropy; CUDA and
    `pip install liger-kernel`). `auto`: `trl` on CUDA, `chunked` elsewhere."""
    gradient_checkpointing: bool = False
    weight_decay: float = Field(0.0, ge=0)
    """Decoupled weight decay (AdamW) on the trained parameters."""
    l1_penalty: float = Field(0.0, ge=0)
    """Adds this x the sum of the absolute values of the adapter weights (the LoRA A/B matrices) to
    the training loss: pushes unneeded adapter weights to zero. Not added to validation loss."""
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    """Cross-entropy against targets smoothed by this much (transformers' `label_smoothing_factor`):
    the model is not pushed towards certainty on small or noisy labels. Not for multi-label heads."""
    max_grad_norm: float = Field(1.0, ge=0)
    optimizer: Optimizer = "adamw_torch"
    precision: DType = "auto"
    """Mixed precision for training. `auto`: bf16 where supported, fp16 on older GPUs, fp32 on CPU."""
    seed: int = 42
    eval_steps: int | None = Field(None, ge=1)
    """Evaluate on validation every N steps. Null: once per epoch."""
    save_steps: int | None = Field(None, ge=1)
    """Checkpoint every N steps (for --resume). Null: at each evaluation."""
    save_total_limit: int = Field(2, ge=1)
    logging_steps: int = Field(10, ge=1)
    early_stopping: EarlyStoppingSpec | None = None
    """Stop when the validation metric stops improving; keeps the best adapter."""
    report_to: ReportTo = "none"
    neftune_noise_alpha: float | None = Field(None, gt=0)
    progress_bar: bool = True
    divergence: DivergenceSpec = DivergenceSpec()
    """The end-of-training loss check (a loss that ends above where it started is a failed run, exit 1)."""

    def resolved_head_lr_ratio(self, task_type: str) -> float:
        """`head_lr_ratio` with `auto` resolved for a head of ``task_type`` (see its description)."""
        if self.head_lr_ratio == "auto":
            return 1.0 if task_type in HEADS_AT_THE_RATE else AUTO_HEAD_LR_RATIO
        return self.head_lr_ratio

    def resolved_min_steps(self, *, head: bool) -> int:
        """`min_steps` with `auto` resolved (see its description)."""
        if self.min_steps == "auto":
            return AUTO_MIN_STEPS_HEAD if head else 0
        return self.min_steps

    def resolved_class_weights(
        self, *, tagging: bool, multi_label: bool, majority_share: float | None = None
    ) -> str:
        """`class_weights` with `auto` resolved: `none`, `balanced` or `sqrt_balanced`. For tagging,
        `auto` depends on ``majority_share`` (the most frequent tag's share of the training tags);
        without it, `auto` is returned as it is (the data decides)."""
        if multi_label:
            return "none"
        if self.class_weights == "auto":
            if not tagging:
                return "none"
            if majority_share is None:
                return "auto"
            return "sqrt_balanced" if majority_share >= AUTO_WEIGHTS_MAJORITY_SHARE else "none"
        return self.class_weights

    @field_validator("min_steps")
    @classmethod
    def _min_steps_without_max_steps(cls, value: int | str, info: ValidationInfo) -> int | str:
        if value not in ("auto", 0) and info.data.get("max_steps") is not None:
            raise ValueError(
                "has no effect with training.max_steps, which fixes the steps; remove one of them"
            )
        return value

    @model_validator(mode="after")
    def _checkpoints_follow_evaluations(self) -> TrainingSpec:
        if self.early_stopping is not None and self.save_steps is not None:
            if self.eval_steps is None or self.save_steps % self.eval_steps:
                raise ValueError(
                    "with training.early_stopping, training.save_steps must be a multiple of "
                    "training.eval_steps (the best adapter is kept from an evaluation checkpoint)"
                )
        return self


class ExplanationSpec(Spec):
    rows: int = Field(32, ge=0)
    """Test rows explained (a seeded sample); 0 switches explanations off."""
    steps: int = Field(24, ge=4, le=512)
    """Integrated Gradients steps per row to start with (Gauss-Legendre points; more = a smaller
    convergence delta)."""
    max_steps: int = Field(512, ge=4, le=4096)
    """Steps are doubled up to this until the attributions sum to the output gap within `tolerance`
    (a confident model's output can jump within a small stretch of the path, which few points miss).
    Rows still above it are left out of the ranking and counted in the report. Equal to `steps`: no
    doubling."""
    tolerance: float = Field(0.05, gt=0, le=1)
    """Largest convergence delta accepted, as a fraction of |output - baseline output|."""
    top_words: int = Field(10, ge=1, le=100)
    """Words listed per class (per target and direction for regression)."""

    @model_validator(mode="after")
    def _step_range(self) -> ExplanationSpec:
        if self.max_steps < self.steps:
            raise ValueError(
                f"evaluation.explanations.max_steps ({self.max_steps}) is below steps ({self.steps}); "
                "make it at least steps (equal: no doubling)"
            )
        return self


class EvaluationSpec(Spec):
    enabled: bool = True
    """Score the test split at the end of `run`."""
    baselines: tuple[Baseline, ...] = ("majority", "tfidf_logreg", "base_model")
    """Shown beside the adapted model. `full_finetune` trains the whole model with the same budget."""
    full_finetune_learning_rate: float | None = Field(None, gt=0, lt=1)
    """The `full_finetune` baseline's learning rate. Default: 0.1 x training.learning_rate (full
    fine-tuning diverges at LoRA rates). Every other training setting is the recipe's."""
    perplexity: bool = True
    """SFT: validation and test loss/perplexity before and after training."""
    max_new_tokens: int = Field(64, ge=1)
    """Generative evaluation: longest answer generated."""
    max_samples: int | None = Field(None, ge=1)
    """Score at most this many test rows (generative evaluation is slow on a CPU)."""
    batch_size: int = Field(16, ge=1)
    samples_in_report: int = Field(5, ge=0)
    explanations: ExplanationSpec | None = None
    """Head mode: the words that drive the adapted model's decisions (Integrated Gradients) over a sample of
    the test split, beside the TF-IDF baseline's top features, in report.md and metrics.json. Null (the
    default): the ExplanationSpec defaults for head runs (32 rows); `{rows: 0}` switches them off."""
    validation_max_samples: int = Field(64, ge=1)
    """Generative tasks: when a task metric is watched during training (early stopping on it, or a
    sweep's objective), a seeded sample of this many validation rows is scored at each evaluation
    (generation is slow). Head mode scores every validation row at each evaluation."""


class PublishSpec(Spec):
    repo_id: str
    """`org/name` on the Hub."""
    private: bool = True
    revision: str | None = None
    merged: bool = False
    endpoint: str | None = None
    """Hub endpoint; default `HF_ENDPOINT` or https://huggingface.co."""
    timeout: float = Field(60, gt=0, le=3600)
    """Seconds to wait for the Hub to connect (at most 10 of them) and to answer each read or write."""
    retries: int = Field(3, ge=0, le=10)
    """Retries (with backoff) of Hub calls that are safe to repeat, after a timeout, a network failure or
    a 5xx / 429 answer; the upload itself is retried by huggingface_hub."""


class OutputSpec(Spec):
    dir: Path = Path("runs")
    """Parent directory; the run goes to `<dir>/<name>/`."""
    overwrite: bool = False
    """Replace a finished run of the same name, or discard an interrupted one (`<name>.incomplete/`)."""
    merge: bool = False
    """Also write `merged/` (base + adapter merged, reloaded unquantized)."""
    merge_dtype: Literal["bf16", "fp16", "fp32"] = "bf16"
    publish: PublishSpec | None = None
    """Push the adapter to the Hub at the end (credentials are checked before training)."""
    license: str | None = None
    """License for the model card (SPDX id or Hub license name)."""


class FsdpSpec(Spec):
    sharding: FsdpSharding = "full_shard"
    """`full_shard`: parameters, gradients and optimizer state are sharded, and each layer's parameters are
    gathered for its forward and backward and freed after (least memory). `shard_grad_op`: parameters stay
    gathered from forward to backward (fewer all-gathers, more memory); gradients and optimizer state sharded."""
    cpu_ram_efficient_loading: bool = True
    """Only the first process reads the weights; the others receive their shards when the model is wrapped
    (CPU RAM for one copy of the model per machine instead of one per process)."""
    activation_checkpointing: bool = False
    """FSDP's own activation checkpointing of each transformer layer. Use it instead of
    training.gradient_checkpointing, which would gather each layer's parameters a second time."""
    cpu_offload: bool = False
    """Keep the sharded parameters, gradients and optimizer state in CPU RAM between uses (how Answer.AI fit
    a 70B QLoRA on two 24 GB GPUs); slower steps."""


class DeepSpeedSpec(Spec):
    stage: Literal[1, 2, 3] = 2
    """ZeRO stage: 1 shards the optimizer state, 2 also the gradients, 3 also the parameters."""
    offload_optimizer: bool = False
    """Keep the optimizer state in CPU RAM and run the optimizer step there."""
    offload_parameters: bool = False
    """Stage 3 only: keep the sharded parameters in CPU RAM between uses."""

    @model_validator(mode="after")
    def _stage3_only(self) -> DeepSpeedSpec:
        if self.offload_parameters and self.stage != 3:
            raise ValueError(
                "distributed.deepspeed.offload_parameters needs stage 3 (only stage 3 shards parameters)"
            )
        return self


class DistributedSpec(Spec):
    strategy: Strategy = "ddp"
    """How several processes share one run (`lora-adapt run --num-processes N`, `accelerate launch -m
    lora_adapt run`, `torchrun`): `ddp` (a full copy of the model per process, gradients averaged), `fsdp`
    (parameters, gradients and optimizer state sharded across processes; with a 4-bit base this is FSDP +
    QLoRA), `deepspeed` (ZeRO stage 1-3). A run in one process does not use it (and says so)."""
    fsdp: FsdpSpec = FsdpSpec()
    """Options of `strategy: fsdp` (FSDP2 through accelerate)."""
    deepspeed: DeepSpeedSpec = DeepSpeedSpec()
    """Options of `strategy: deepspeed`."""

    @model_validator(mode="after")
    def _options_fit_strategy(self) -> DistributedSpec:
        for section in ("fsdp", "deepspeed"):
            default = type(self).model_fields[section].default  # a resolved recipe writes the defaults out
            if (
                section in self.model_fields_set
                and self.strategy != section
                and getattr(self, section) != default
            ):
                raise ValueError(
                    f"distributed.{section} applies to strategy '{section}', not '{self.strategy}'; "
                    f"set distributed.strategy: {section} or remove distributed.{section}"
                )
        return self

    @property
    def shards_parameters(self) -> bool:
        """Parameters are split across processes (FSDP, ZeRO-3): no process holds the whole model."""
        return self.strategy == "fsdp" or (self.strategy == "deepspeed" and self.deepspeed.stage == 3)


CROSS_SECTION_SEPARATOR = "\n"
"""Between the problems of the recipe-wide check (their messages hold '; ' themselves)."""


class Recipe(Spec):
    """One training job, end to end."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
    """Run name; the run directory is `<output.dir>/<name>`."""
    description: str | None = None
    task: TaskSpec = TaskSpec()
    model: ModelSpec
    quantization: QuantizationSpec = QuantizationSpec()
    adapter: AdapterSpec = AdapterSpec()
    data: DataSpec
    training: TrainingSpec = TrainingSpec()
    evaluation: EvaluationSpec = EvaluationSpec()
    output: OutputSpec = OutputSpec()
    distributed: DistributedSpec = DistributedSpec()
    """How a run launched on several processes shares the work (one process ignores it)."""
    sweep: SweepSpec | None = None
    """The hyperparameter search `lora-adapt sweep` runs over this recipe (`lora-adapt run` trains
    the recipe as written and ignores this section)."""

    @model_validator(mode="after")
    def _cross_section(self) -> Recipe:
        from .sharding import sharding_problems

        problems = sharding_problems(self)
        if self.training.packing and self.task.type != "sft":
            problems.append("training.packing only applies to task.type 'sft'")
        if self.training.loss_path != "auto" and _trains_a_head(self.task):
            problems.append(
                "training.loss_path applies to generative training (the LM head); a classifier head "
                "has no vocabulary-sized logits: remove it"
            )
        if self.task.type != "sft" and self.data.format != "auto":
            problems.append(f"data.format is for sft data; task.type '{self.task.type}' fixes its own layout")
        if (
            self.training.early_stopping is not None
            and self.data.split.validation == 0
            and self.data.validation is None
            and self.data.path is not None
        ):
            problems.append(
                "training.early_stopping needs a validation split (data.split.validation > 0 or data.validation)"
            )
        if (
            self.evaluation.full_finetune_learning_rate is not None
            and "full_finetune" not in self.evaluation.baselines
        ):
            problems.append(
                "evaluation.full_finetune_learning_rate is set but 'full_finetune' is not in "
                "evaluation.baselines; add it there or remove the rate"
            )
        if self.quantization.method != "none" and "full_finetune" in self.evaluation.baselines:
            problems.append(
                "evaluation.baselines 'full_finetune' cannot train a quantized model; drop it or set quantization.method: none"
            )
        if self.data.label_delimiter is not None and self.task.type not in ("classification", "regression"):
            problems.append(
                "data.label_delimiter gives each line a label: it applies to classification and regression"
            )
        generative = self.task.mode == "generative" or (
            self.task.mode == "auto" and self.task.type in ("sft", "extraction")
        )
        explained = self.evaluation.explanations
        if explained is not None and explained.rows and generative:
            problems.append(
                "evaluation.explanations explains a classifier or regression head; this task trains a generative "
                "model (remove evaluation.explanations)"
            )
        if self.training.label_smoothing and self.task.multi_label:
            problems.append(
                "training.label_smoothing does not apply to multi-label classification (each label is a "
                "separate yes/no); remove it"
            )
        if self.training.label_smoothing and self.task.type == "regression":
            problems.append("training.label_smoothing does not apply to regression (no classes); remove it")
        problems += self._head_only_training_keys()
        relation_head = self.task.type == "relation_classification" and self.task.mode != "generative"
        if self.output.merge and relation_head and self.task.pooling in ("auto", "entity_start"):
            problems.append(
                "output.merge cannot merge a relation head with entity_start pooling (the default for "
                "relations) into a transformers model; set task.pooling: mean, or merge: false"
            )
        if problems:
            raise ValueError(CROSS_SECTION_SEPARATOR.join(problems))  # the loader locates each by its keys
        return self

    def _head_only_training_keys(self) -> list[str]:
        """Settings of a classifier head set explicitly where no head is trained (they would be ignored)."""
        t, problems = self.training, []
        if not _trains_a_head(self.task):
            # `auto` is no choice; nor is 10, the default that recipes recorded before `auto` dumped
            if t.head_lr_ratio not in ("auto", AUTO_HEAD_LR_RATIO):
                problems.append("training.head_lr_ratio applies to classifier heads (task.mode head) only")
            if t.class_weights not in ("auto", "none"):
                problems.append("training.class_weights applies to classifier heads (task.mode head) only")
        elif (self.task.multi_label or self.task.type == "regression") and t.class_weights not in (
            "auto",
            "none",
        ):
            problems.append(
                "training.class_weights applies to single-label classifier and tagging heads; a multi-label or "
                "regression head has no classes to weigh (remove it)"
            )
        return problems


def _trains_a_head(task: TaskSpec) -> bool:
    from .derived import task_mode  # derived imports this module

    return task_mode(task) == "head"
