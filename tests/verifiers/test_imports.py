"""Import hygiene: ``import octo.verifiers`` is cheap and never reaches into the engine."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import sys
import octo.verifiers
from octo.verifiers import (VerifierConfig, RewardConfig, VerifyResult, verify, extract_answer, VerifierPool,
    shared_pool, score_completions, RewardBreakdown, MathReward, ControlReward)
import octo.verifiers.cli, octo.verifiers.worker
heavy = [m for m in ("sympy", "math_verify", "latex2sympy2_extended", "torch", "transformers", "trl")
         if m in sys.modules]
engine = [m for m in sys.modules if m.startswith(("octo.cpt", "octo.probe", "octo.data"))]
print(heavy, engine)
"""


def test_import_is_light_and_engine_free():
    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[] []"


def test_public_names():
    import octo.verifiers as v

    for name in v.__all__:
        assert getattr(v, name) is not None
    assert "verify_batch" in dir(v.VerifierPool)
