"""`lora-adapt run RECIPE --num-processes N`: start N processes of `python -m lora_adapt run RECIPE ...` with
accelerate's launcher (torch's elastic launcher underneath, as `accelerate launch --multi_gpu` does: one
process per GPU, or N CPU processes talking over gloo). Each process then runs the pipeline as it would
under any launcher (`distributed.Ranks`). The recipe, not the launcher, picks the strategy and the mixed
precision, so nothing here but the process count and a free port."""

from __future__ import annotations

import os
import socket

from .errors import UsageError


def launch(worker_args: list[str], num_processes: int, *, debug: bool = False) -> int:
    """Run ``lora_adapt <worker_args>`` in ``num_processes`` processes; the exit code of the run (0, or the
    code of the first process that failed: that process prints its error)."""
    from accelerate.commands.launch import launch_command, launch_command_parser
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UsageError(
            "--num-processes was given inside a distributed launch (WORLD_SIZE is set)",
            hint="drop --num-processes: the launcher already started the processes",
        )
    launcher_args = [
        "--multi_gpu",
        "--num_processes",
        str(num_processes),
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",  # the recipe's training.precision decides (the Trainer's bf16 / fp16 flags)
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(free_port()),
        "-m",
        "lora_adapt",
        *worker_args,
    ]
    if debug:
        os.environ["LORA_ADAPT_DEBUG"] = "1"
    try:
        launch_command(launch_command_parser().parse_args(launcher_args))
    except ChildFailedError as exc:
        rank, failure = exc.get_first_failure()
        code = failure.exitcode if failure.exitcode > 0 else 1
        print(f"error: the run failed on rank {rank} of {num_processes} (exit code {failure.exitcode})")
        return code
    return 0


def free_port() -> int:
    """A TCP port free on this machine now, for the processes' rendezvous (two runs never share one)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
