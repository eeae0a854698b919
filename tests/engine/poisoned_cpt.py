"""``octo`` with the loss of one step scaled, for stages launched as subprocesses (torchrun), where a test
cannot monkeypatch the trainer's fault-injection seam :func:`octo.cpt.trainer.loss_scale` itself:

    torchrun --nproc_per_node 2 -m tests.engine.poisoned_cpt STEP FACTOR cpt RECIPE ...
"""

from __future__ import annotations

import sys

from octo.cli import main
from octo.cpt import trainer

if __name__ == "__main__":
    step, factor = int(sys.argv[1]), float(sys.argv[2])
    trainer.loss_scale = lambda s: factor if s == step else 1.0
    sys.exit(main(sys.argv[3:]))
