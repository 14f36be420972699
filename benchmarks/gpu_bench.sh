#!/usr/bin/env bash
# GPU benchmark of lora-adapt: full fine-tuning vs LoRA vs QLoRA (and hand-written peers) on Llama-shaped
# models with random weights (1B / 8B shapes), plus an emulated 24 GB consumer card, in one go.
#
# Where:    a lent H200 (device tool) or any CUDA machine with the packages installed.
# Command:  bash benchmarks/gpu_bench.sh              (STAGES="1b 8b 8b24" by default; see the knobs below)
#           On the lent H200, whose image lacks trl/bitsandbytes/datasets/pydantic, first run
#           `bash benchmarks/gpu_wheels.sh` HERE (it fills .whl/), then call the device tool with carry [".whl"].
# Output:   $OUT/gpu_*.md (readable tables) and $OUT/gpu_results.tar.gz (JSON + PNG + markdown + plans + logs);
#           at most 8 files come back from $OUT, hence the archive.
# Time:     not measured yet (written without a GPU). Estimated on an H200: stage 1b ~5 min, 8b ~4 min,
#           8b24 ~2 min, plus ~2 min materialising the 8B shape. Split STAGES across calls to fit 10-minute runs.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
OUT=${OUT:-$REPO/benchmarks/results}
WORK=${WORK:-/tmp/lora-adapt-gpu-bench}
STAGES=${STAGES:-"1b 8b 8b24"}
STEPS=${STEPS:-5}
REPEATS=${REPEATS:-3}
CARD=${CARD:-23.5GiB}  # a 24 GiB card (RTX 3090/4090) minus ~0.5 GiB the CUDA context takes outside torch's cap
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
exec > >(tee -a "$LOG") 2>&1

echo "== $(date -u +%FT%TZ) lora-adapt GPU benchmark: stages [$STAGES], $STEPS steps x $REPEATS repeats"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$WORK/results/nvidia_smi.csv"
$PY -c "import torch, transformers, peft, trl, bitsandbytes; print('torch', torch.__version__, 'transformers',
transformers.__version__, 'peft', peft.__version__, 'trl', trl.__version__, 'bitsandbytes', bitsandbytes.__version__)"

# Length-varied instruction data written by us (MedQuAD from ../shared/data when it is present).
DATA=$WORK/data.jsonl
MEDQUAD=$REPO/../shared/data/medquad_ninds_qa/6_NINDS_QA
$PY - "$DATA" "$MEDQUAD" <<'EOF'
import sys
from pathlib import Path
from lora_adapt.bench.data import is_medquad_dir, medquad_rows, synthetic_rows, write_jsonl
out, medquad = Path(sys.argv[1]), Path(sys.argv[2])
rows = medquad_rows(medquad) if is_medquad_dir(medquad) else synthetic_rows(2000, seed=0)
write_jsonl(rows, out)
print(f"data: {len(rows)} rows -> {out}")
EOF

recipe() {  # recipe NAME SHAPE SEQ BATCH CHECKPOINTING
  cat > "$WORK/recipes/$1.yaml" <<EOF
name: $1
model: {name_or_path: $2, dtype: bf16, attn_implementation: sdpa}
adapter: {rank: 16, alpha: 32, dropout: 0.05, target_modules: all-linear}
data: {train: $DATA, format: instruction, max_seq_length: $3, cleaning: {overlength: truncate}}
training: {batch_size: $4, gradient_checkpointing: $5, precision: bf16, optimizer: adamw_torch}
EOF
  echo "$WORK/recipes/$1.yaml"
}

bench() {  # bench RECIPE LABEL ARGS...
  local r=$1 label=$2; shift 2
  $LA bench "$r" --workdir "${BENCH_WORKDIR:-$WORK/w-$label}" --out "$WORK/results" --label "$label" --steps "$STEPS" "$@" || \
    echo "!! bench $label failed (exit $?)"
  cp "$WORK/results/$label.md" "$OUT/" 2>/dev/null || true
}

for stage in $STAGES; do
  case $stage in
    1b)  # every arm, incl. the peers and packing, on a 1B shape at 1k tokens
      R=$(recipe gpu-llama-1b llama-1b 1024 4 false)
      $LA plan "$R" --gpu-memory 139GiB --json > "$WORK/results/gpu_plan_llama-1b.json"
      bench "$R" gpu_llama-1b --modes full,lora,qlora --peers trainer,trl --packing --repeats "$REPEATS" ;;
    8b)  # the 8B shape at 2k tokens, checkpointing on (bf16 AdamW full fine-tuning needs ~64 GiB + activations)
      R=$(recipe gpu-llama-8b llama-8b 2048 2 true)
      $LA plan "$R" --gpu-memory 139GiB --json > "$WORK/results/gpu_plan_llama-8b.json"
      bench "$R" gpu_llama-8b --modes full,lora,qlora --peers '' --repeats $(( REPEATS > 2 ? 2 : REPEATS )) ;;
    8b24)  # the same 8B job on an emulated 24 GB card: does the planner's verdict hold?
      R=$(recipe gpu24-llama-8b llama-8b 2048 1 true)
      $LA plan "$R" --gpu-memory 24GiB --json > "$WORK/results/gpu24_plan_llama-8b.json" || true
      $LA plan "$R" --gpu-memory 24GiB | tee "$WORK/results/gpu24_plan_llama-8b.txt" || true
      # same workdir as stage 8b: its materialised 8B model is reused
      LORA_ADAPT_BENCH_GPU_MEMORY=$CARD BENCH_WORKDIR=$WORK/w-gpu_llama-8b \
        bench "$R" gpu24_llama-8b --modes full,lora,qlora --peers '' --repeats 1 ;;
    *) echo "unknown stage $stage" ;;
  esac
done

cp "$LOG" "$WORK/results/" 2>/dev/null || true
tar -C "$WORK/results" -czf "$OUT/gpu_results.tar.gz" .
ls -la "$OUT"
echo "== done $(date -u +%FT%TZ)"
