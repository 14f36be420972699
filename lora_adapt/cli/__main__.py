"""`python -m lora_adapt.cli ...` (what benchmarks/gpu_bench.sh calls): the `lora-adapt` command."""

import sys

from . import main

sys.exit(main())
