"""What padding-free packing costs on attention without variable-length kernels (SDPA, eager): the decoder's
forward + backward over one row of N x L tokens holding N packed sequences (transformers masks them apart
from the position ids, but the attention is computed over the whole row) against the same tokens as N rows
of L. CPU seconds (process time), one torch thread.

    python benchmarks/packed_row_cost.py MODEL_DIR [--rows 4] [--length 256] [--repeats 3]

MODEL_DIR: a causal LM folder, e.g. the llama-60m that `lora-adapt bench` materialises in its workdir."""

from __future__ import annotations

import argparse
import time


def main() -> None:
    import torch
    from transformers import AutoModelForCausalLM

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--rows", type=int, default=4)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(args.model, attn_implementation="sdpa").train()
    n, length = args.rows, args.length
    ids = torch.randint(0, model.config.vocab_size, (1, n * length))
    positions = torch.arange(length).repeat(n).unsqueeze(0)  # restarts per sequence: packed

    def step(ids: torch.Tensor, positions: torch.Tensor) -> float:
        start = time.process_time()
        model.model(input_ids=ids, position_ids=positions).last_hidden_state.sum().backward()
        return time.process_time() - start

    for repeat in range(args.repeats):
        one = step(ids, positions)
        apart = step(ids.view(n, length), positions.view(n, length))
        print(
            f"repeat {repeat}: one row of {n * length} ({n} packed) {one:.2f} s, {n} rows of {length} "
            f"{apart:.2f} s, ratio {one / apart:.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
