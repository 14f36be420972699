"""`python -m lora_adapt ...` is `lora-adapt ...`: what distributed launchers start
(`accelerate launch -m lora_adapt run RECIPE`, `torchrun -m lora_adapt run RECIPE`)."""

from .cli import main

main(prog_name="lora-adapt")
