"""octo: an RL-compatibility mid-training suite.

Importing ``octo`` is cheap: torch, transformers, trl and vllm are imported by the
functions that need them, never at package import time.
"""

from octo.errors import OctoError

__version__ = "0.1.0"
__all__ = ["OctoError", "__version__"]
