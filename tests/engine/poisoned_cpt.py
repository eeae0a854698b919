"""A poisoned step for the stability tests: the loss of one optimizer step scaled by a factor, so that the real spike
detection and actions have a spike to handle.

In this process: ``scale_loss(lambda step: 1.0e4 if step == 8 else 1.0, monkeypatch.setattr)``. For stages launched
as subprocesses (torchrun), where a test cannot monkeypatch the trainer:

    torchrun --nproc_per_node 2 -m tests.engine.poisoned_cpt STEP FACTOR cpt RECIPE ...
"""

from __future__ import annotations

import sys


def scale_loss(factor_of_step, set_attr=setattr) -> None:
    """Multiply the language-model loss of optimizer step ``s`` (1-based) by ``factor_of_step(s)``, which may also
    raise (KeyboardInterrupt: a stage interrupted at that step)."""
    from octo.cpt.trainer import StageRun

    real = getattr(StageRun.lm_loss, "unscaled", StageRun.lm_loss)   # a second call replaces the first

    def scaled(self, logits, batch, n_targets):
        factor = factor_of_step(self.step + 1)
        loss = real(self, logits, batch, n_targets)
        return loss * factor if factor != 1.0 else loss

    scaled.unscaled = real
    set_attr(StageRun, "lm_loss", scaled)


if __name__ == "__main__":
    from octo.cli import main

    step, factor = int(sys.argv[1]), float(sys.argv[2])
    scale_loss(lambda s: factor if s == step else 1.0)
    sys.exit(main(sys.argv[3:]))
