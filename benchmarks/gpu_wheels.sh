#!/usr/bin/env bash
# Fill .whl/ with the wheels benchmarks/gpu_bench.sh needs on the lent H200, whose image (Python 3.12,
# torch, transformers, peft, accelerate, safetensors, tokenizers, pyyaml, click, psutil, matplotlib) lacks
# these. Run it here (where pip reaches the index), then call the device tool with carry [".whl"].
# The tree that travels is capped at 64 MiB: check `du -sh .whl` (bitsandbytes is the big one).
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64
           --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64
           --platform any)
# Versions pinned to what the CPU suite runs with (see DEVELOPERS.md); datasets' own needs included.
WHEELS=(trl==1.16.0 bitsandbytes==0.50.2 transformers==5.24.0 peft==0.21.2 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19
        pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
        liger-kernel==0.8.5)  # training.loss_path liger (Triton ships with CUDA torch)
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${PLATFORMS[@]}" -d .whl "${WHEELS[@]}"
du -sh .whl
