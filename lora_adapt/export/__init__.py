"""Merge (always from an unquantized base, verified) and export formats for serving engines."""

from .checks import check_adapter_weights
from .merge import merge_run
from .serving import export_run

__all__ = ["check_adapter_weights", "export_run", "merge_run"]
