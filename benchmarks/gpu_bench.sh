#!/usr/bin/env bash
# GPU benchmark of lora-adapt: full fine-tuning vs LoRA vs QLoRA (and hand-written peers) on Llama-shaped
# models with random weights (1B / 8B shapes), the loss paths (training.loss_path: TRL's fused head, Liger,
# lora-adapt's chunked loss, against the peer's full logits), a long-context job where the logits term
# dominates (128k vocabulary, 8k tokens), and the 8B job on an emulated 24 GB consumer card, in one go.
#
# Where:    a lent H200 (device tool) or any CUDA machine with the packages installed.
# Command:  bash benchmarks/gpu_bench.sh              (STAGES="domains 1b long 8b 8b24" by default; knobs below;
#           then the FSDP + QLoRA arm on 2 GPUs: FSDP_QLORA=0 skips it, STAGES=none runs it alone)
#           On the lent H200, whose image lacks trl/bitsandbytes/datasets/pydantic/liger-kernel, first run
#           `bash benchmarks/gpu_wheels.sh` HERE (it fills .whl/), then call the device tool with carry [".whl"].
# Dry run:  DRY_RUN=1 bash benchmarks/gpu_bench.sh    (CPU: the same stages, arms and code paths on tiny
#           shapes, 1 step x 1 repeat; CUDA-only steps are skipped and listed in $OUT/gpu_skipped.txt).
#           tests/test_gpu_bench.py runs it (pytest -m slow), so the first lent GPU produces the table in one try.
# Output:   $OUT/gpu_*.md (readable tables) and $OUT/gpu_results.tar.gz (JSON + PNG + markdown + plans + logs);
#           at most 8 files come back from $OUT, hence the archive.
# Stage domains: many adapters on one base (issue 11): one mixed-adapter batch of 8 requests against
#           switching adapters per request, for 1, 2, 4 and 8 adapters (mark: >= 3x at 4), on three MiniLM
#           adapters trained a few steps each on the embedded quickstart data (domains_train.py --quick).
# Time:     not measured yet (written without a GPU). Estimated on an H200: stage domains ~2 min, 1b ~6 min, long ~3 min,
#           8b ~4 min, 8b24 ~2 min, plus ~2 min materialising the 8B shape. Split STAGES across calls to fit
#           10-minute runs. The dry run takes ~13 minutes on 2 shared CPU cores (stage domains alone: 5 min).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
DRY_RUN=${DRY_RUN:-0}
OUT=${OUT:-$REPO/benchmarks/results}
WORK=${WORK:-/tmp/lora-adapt-gpu-bench}
STAGES=${STAGES:-"domains 1b long 8b 8b24"}
CARD=${CARD:-23.5GiB}  # a 24 GiB card (RTX 3090/4090) minus ~0.5 GiB the CUDA context takes outside torch's cap
if [ "$DRY_RUN" = 1 ]; then
  # tiny shapes and lengths; every stage, arm and code path otherwise unchanged
  STEPS=${STEPS:-1}; REPEATS=${REPEATS:-1}; THREADS=(--threads 1)
  SHAPE_1B=llama-tiny; SHAPE_8B=llama-tiny; SHAPE_LONG=llama-tiny; SEQ_1B=128; SEQ_8B=128; SEQ_LONG=512
  LOSS_PATHS=chunked,trl  # liger: CUDA only
else
  STEPS=${STEPS:-5}; REPEATS=${REPEATS:-3}; THREADS=()
  SHAPE_1B=llama-1b; SHAPE_8B=llama-8b; SHAPE_LONG=llama-1b; SEQ_1B=1024; SEQ_8B=2048; SEQ_LONG=8192
  LOSS_PATHS=chunked,liger  # lora-adapt/lora itself runs auto = trl on CUDA
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false HF_HUB_DISABLE_TELEMETRY=1

if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}
PY=${PY:-python3}
LA="$PY -m lora_adapt.cli"
mkdir -p "$OUT" "$WORK/recipes" "$WORK/results"
LOG=$OUT/gpu_bench.log
SKIPPED=$OUT/gpu_skipped.txt
: > "$SKIPPED"
exec > >(tee -a "$LOG") 2>&1
skip() { echo "skipped (CUDA only): $*" | tee -a "$SKIPPED"; }

echo "== $(date -u +%FT%TZ) lora-adapt GPU benchmark: stages [$STAGES], $STEPS steps x $REPEATS repeats, dry run $DRY_RUN"
if [ "$DRY_RUN" = 1 ]; then
  skip "nvidia-smi (GPU name, memory, driver)"
else
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$WORK/results/nvidia_smi.csv"
fi
$PY -c "import torch, transformers, peft, trl, bitsandbytes; print('torch', torch.__version__, 'transformers',
transformers.__version__, 'peft', peft.__version__, 'trl', trl.__version__, 'bitsandbytes', bitsandbytes.__version__)"
if [ "$DRY_RUN" = 1 ]; then
  skip "import liger_kernel (needs Triton and CUDA); the lora-adapt/lora+loss=liger arm"
else
  $PY -c "import liger_kernel; print('liger-kernel', getattr(liger_kernel, '__version__', 'present'))"
fi

# Length-varied instruction data written by us (MedQuAD from ../shared/data when it is present), and long
# documents made of consecutive answers for the long-context stage.
DATA=$WORK/data.jsonl
LONG=$WORK/long.jsonl
MEDQUAD=$REPO/../shared/data/medquad_ninds_qa/6_NINDS_QA
$PY - "$DATA" "$LONG" "$MEDQUAD" "$SEQ_LONG" <<'EOF'
import sys
from pathlib import Path
from lora_adapt.bench.data import is_medquad_dir, long_rows, medquad_rows, synthetic_rows, write_jsonl
out, long_out, medquad, seq = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
rows = medquad_rows(medquad) if is_medquad_dir(medquad) else synthetic_rows(2000, seed=0)
write_jsonl(rows, out)
long = long_rows(rows, min_words=seq)  # about 1.3 tokens per word: every row fills (and is truncated to) seq
write_jsonl(long, long_out)
print(f"data: {len(rows)} rows -> {out}; {len(long)} long rows -> {long_out}")
EOF

recipe() {  # recipe NAME SHAPE SEQ BATCH CHECKPOINTING [DATA]
  cat > "$WORK/recipes/$1.yaml" <<EOF
name: $1
model: {name_or_path: $2, dtype: bf16, attn_implementation: sdpa}
adapter: {rank: 16, alpha: 32, dropout: 0.05, target_modules: all-linear}
data: {train: ${6:-$DATA}, format: instruction, max_seq_length: $3, cleaning: {overlength: truncate}}
training: {batch_size: $4, gradient_checkpointing: $5, precision: bf16, optimizer: adamw_torch}
EOF
  echo "$WORK/recipes/$1.yaml"
}

bench() {  # bench RECIPE LABEL ARGS...
  local r=$1 label=$2; shift 2
  $LA bench "$r" --workdir "${BENCH_WORKDIR:-$WORK/w-$label}" --out "$WORK/results" --label "$label" \
    --steps "$STEPS" ${THREADS[@]+"${THREADS[@]}"} "$@" || echo "!! bench $label failed (exit $?)"
  cp "$WORK/results/$label.md" "$OUT/" 2>/dev/null || true
}

plan() {  # plan RECIPE NAME BUDGET: the planner's verdict for the real shape (meta device: no GPU needed)
  $LA plan "$1" --gpu-memory "$3" --json > "$WORK/results/$2.json" || true
  $LA plan "$1" --gpu-memory "$3" > "$WORK/results/$2.txt" || true
}

for stage in $STAGES; do
  case $stage in
    domains)  # issue 11's throughput mark: mixed-adapter batches vs switching, on the GPU
      dev=cuda; [ "$DRY_RUN" = 1 ] && dev=cpu
      { $PY benchmarks/domains_train.py --work "$WORK/domains" --quick ${THREADS[@]+"${THREADS[@]}"} > "$WORK/results/gpu_domains_train.log" 2>&1 \
        && $PY benchmarks/domains_bench.py --work "$WORK/domains" --only throughput --device $dev --repeats "$((REPEATS * 5))" \
          --label gpu_domains --out "$WORK/results" ${THREADS[@]+"${THREADS[@]}"} > "$WORK/results/gpu_domains.log" 2>&1 \
        && cp "$WORK/results/gpu_domains.md" "$OUT/"; } || echo "!! bench gpu_domains failed (logs: gpu_domains*.log in the archive)" ;;
    1b)  # every arm, incl. the peers, packing and the loss paths, on a 1B shape at 1k tokens
      R=$(recipe gpu-llama-1b $SHAPE_1B $SEQ_1B 4 false)
      plan "$(recipe plan-llama-1b llama-1b 1024 4 false)" gpu_plan_llama-1b 139GiB
      bench "$R" gpu_llama-1b --modes full,lora,qlora --peers trainer,trl --packing --loss-paths "$LOSS_PATHS" \
        --repeats "$REPEATS" ;;
    long)  # 128k vocabulary at 8k tokens: the logits term dominates; each loss path against the peer's full logits
      R=$(recipe gpu-llama-1b-8k $SHAPE_LONG $SEQ_LONG 1 true "$LONG")
      plan "$(recipe plan-llama-1b-8k llama-1b 8192 1 true "$LONG")" gpu_plan_llama-1b-8k 139GiB
      bench "$R" gpu_llama-1b-8k --modes lora --peers trainer --loss-paths "$LOSS_PATHS" --repeats "$REPEATS" ;;
    8b)  # the 8B shape at 2k tokens, checkpointing on (bf16 AdamW full fine-tuning needs ~64 GiB + activations)
      R=$(recipe gpu-llama-8b $SHAPE_8B $SEQ_8B 2 true)
      plan "$(recipe plan-llama-8b llama-8b 2048 2 true)" gpu_plan_llama-8b 139GiB
      bench "$R" gpu_llama-8b --modes full,lora,qlora --peers '' --repeats $(( REPEATS > 2 ? 2 : REPEATS )) ;;
    8b24)  # the same 8B job on an emulated 24 GB card: does the planner's verdict hold?
      R=$(recipe gpu24-llama-8b $SHAPE_8B $SEQ_8B 1 true)
      plan "$(recipe plan24-llama-8b llama-8b 2048 1 true)" gpu24_plan_llama-8b 24GiB
      [ "$DRY_RUN" = 1 ] && skip "LORA_ADAPT_BENCH_GPU_MEMORY=$CARD (torch.cuda.set_per_process_memory_fraction) in stage 8b24"
      # same workdir as stage 8b: its materialised 8B model is reused
      LORA_ADAPT_BENCH_GPU_MEMORY=$CARD BENCH_WORKDIR=$WORK/w-gpu_llama-8b \
        bench "$R" gpu24_llama-8b --modes full,lora,qlora --peers '' --repeats 1 ;;
    *) echo "unknown stage $stage" ;;
  esac
done

# ==== begin FSDP + QLoRA arm (issue 16) =====================================================================
# The 8B shape as QLoRA (NF4, stored in bf16) sharded by FSDP over 2 GPUs through `lora-adapt run --num-processes 2`,
# next to the planner's per-GPU prediction. NOT MEASURED: written without a GPU. FSDP_QLORA=0 skips it,
# FSDP_QLORA_STEPS sets the steps (default 5); skipped with fewer than 2 GPUs. Results: $OUT/fsdp_qlora.md, and
# $WORK/results/fsdp_qlora/ (plan, run log, nvidia-smi samples) in the archive.
fsdp_qlora_arm() {
  local dir=$WORK/results/fsdp_qlora gpus=0 smi start rc=0 device=cuda
  if [ "$DRY_RUN" = 1 ]; then device=cpu; else gpus=$(nvidia-smi --list-gpus | wc -l); fi
  mkdir -p "$dir"
  $PY -c "
import json, sys
from pathlib import Path
from lora_adapt.bench.models import materialize
rows = [json.loads(line) for line in Path(sys.argv[2]).read_text().splitlines()[:2000]]
print('model:', materialize(sys.argv[3], Path(sys.argv[1]), [' '.join(map(str, r.values())) for r in rows], device=sys.argv[4]))
" "$WORK/models/fsdp-$SHAPE_8B" "$DATA" "$SHAPE_8B" "$device" || { echo "!! fsdp_qlora: materialising the 8B shape failed" | tee "$OUT/fsdp_qlora.md"; return; }
  printf '%s\n' \
    "name: gpu-fsdp-qlora-8b" \
    "model: {name_or_path: $WORK/models/fsdp-$SHAPE_8B, dtype: bf16, attn_implementation: sdpa}" \
    "quantization: {method: nf4, compute_dtype: bf16}" \
    "adapter: {rank: 16, alpha: 32, dropout: 0.05, target_modules: all-linear}" \
    "data: {train: $DATA, format: instruction, max_seq_length: $SEQ_8B, cleaning: {overlength: truncate}}" \
    "training: {max_steps: ${FSDP_QLORA_STEPS:-5}, batch_size: 1, precision: bf16, logging_steps: 1, progress_bar: false}" \
    "evaluation: {perplexity: false}" \
    "distributed: {strategy: fsdp, fsdp: {sharding: full_shard, activation_checkpointing: true}}" \
    "output: {dir: $dir/runs}" > "$dir/recipe.yaml"
  $LA plan "$dir/recipe.yaml" --num-gpus 2 --gpu-memory "$CARD" --modes qlora --json > "$dir/plan.json" || true
  $LA plan "$dir/recipe.yaml" --num-gpus 2 --gpu-memory "$CARD" --modes qlora > "$dir/plan.txt" || true
  if [ "$gpus" -lt 2 ]; then  # the dry run (a CPU) stops here: FSDP needs GPUs
    skip "fsdp_qlora: training on 2 GPUs ($gpus visible); planned only: $dir/plan.txt"
    cp "$dir/plan.txt" "$OUT/fsdp_qlora.md" 2>/dev/null || true
    return
  fi
  nvidia-smi --query-gpu=index,memory.used --format=csv,noheader,nounits -lms 500 > "$dir/gpu_memory.csv" &
  smi=$!
  start=$SECONDS
  CUDA_VISIBLE_DEVICES=0,1 $LA run "$dir/recipe.yaml" --num-processes 2 > "$dir/run.log" 2>&1 || rc=$?
  kill "$smi" 2>/dev/null || true
  {
    echo "# FSDP + QLoRA, $SHAPE_8B shape, 2 GPUs, sequence $SEQ_8B, micro-batch 1: exit $rc, $((SECONDS - start)) s"
    echo
    echo "Peak memory.used per GPU (nvidia-smi every 0.5 s, MiB, CUDA context included):"
    awk -F', ' '$2 > peak[$1] { peak[$1] = $2 } END { for (g in peak) print "- GPU " g ": " peak[g] " MiB" }' "$dir/gpu_memory.csv"
    echo
    echo "Planner, per GPU (lora-adapt plan --num-gpus 2, strategy fsdp from the recipe):"
    sed 's/^/    /' "$dir/plan.txt"
    echo
    echo "Last lines of the run:"
    tail -n 15 "$dir/run.log" | sed 's/^/    /'
  } > "$OUT/fsdp_qlora.md"
  cat "$OUT/fsdp_qlora.md"
}
if [ "${FSDP_QLORA:-1}" = "1" ]; then fsdp_qlora_arm; fi
# ==== end FSDP + QLoRA arm (issue 16) =======================================================================

cp "$LOG" "$SKIPPED" "$WORK/results/" 2>/dev/null || true
tar -C "$WORK/results" -czf "$OUT/gpu_results.tar.gz" .
ls -la "$OUT"
echo "== done $(date -u +%FT%TZ)"
