"""Runs on several processes: the launch checks (``checks``) and each process's part in the run (``ranks``).

torch is imported only inside functions: ``missing_packages`` serves `lora-adapt validate`."""

from .checks import check_launch, missing_packages
from .ranks import Ranks, join

__all__ = ["Ranks", "check_launch", "join", "missing_packages"]
