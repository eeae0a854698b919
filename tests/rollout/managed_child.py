"""A stand-in for an octo process that owns its rollout servers (test_managed_servers.py).

    python tests/rollout/managed_child.py SERVER_PYTHON MODEL_DIR [error]

Makes a ``vllm-server`` backend with no URLs (so it starts one server), prints ``PID URL`` of that
server, then waits in ``try/finally: backend.close()`` as the probe does, until it is signalled;
with ``error`` it raises right after the start instead.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


class _Tok:
    def batch_decode(self, seqs, skip_special_tokens=True):
        return ["" for _ in seqs]


def main() -> None:
    # Ctrl-C raises KeyboardInterrupt even when the test runner was started in the background (a non-interactive
    # shell starts background jobs with SIGINT ignored, and Python keeps an ignored SIGINT ignored)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from octo.rollout import make_backend
    from octo.rollout.config import RolloutConfig

    python, model_dir = sys.argv[1], sys.argv[2]
    cfg = RolloutConfig(backend="vllm-server", server_python=python, max_model_len=256, startup_timeout_s=300)
    backend = make_backend(cfg, tokenizer=_Tok(), model_path=model_dir)
    try:
        handle = backend.started[0]
        print(handle.process.pid, handle.url, flush=True)
        if sys.argv[3:] == ["error"]:
            raise RuntimeError("a failure in the probe")
        while True:
            time.sleep(0.2)
    finally:
        backend.close()


if __name__ == "__main__":
    main()
