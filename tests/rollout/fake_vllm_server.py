"""A FAKE ``python -m vllm.entrypoints.openai.api_server`` for the lifecycle tests of the servers octo
starts itself (test_managed_servers.py): it takes the same command line, answers ``/health`` and the
endpoints of :class:`tests.rollout.fake_peer.FakePeer` on ``--port``, and exits on SIGTERM. It loads
nothing and generates nothing real: the real server's lifecycle is tested under the ``vllm`` marker.

Run through a "python" shell script that execs this file (the ``fake_vllm_python`` fixture).
Environment: FAKE_VLLM_STARTUP_S (seconds before it listens, as a model load), FAKE_VLLM_FAIL
(exit 3 during startup with that message on its log), FAKE_VLLM_STUBBORN (ignore SIGTERM and start an
"engine" child that ignores it too), FAKE_VLLM_PIDFILE (write "server-pid engine-pid process-group" there).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-m", dest="module")
    ap.add_argument("--port", type=int, required=True)
    args, _ = ap.parse_known_args()
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    engine = None
    if os.environ.get("FAKE_VLLM_STUBBORN"):   # deaf to SIGTERM while it loads, with an engine process that is too
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        engine = subprocess.Popen([sys.executable, "-c", "import signal, time; "
                                   "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
    if os.environ.get("FAKE_VLLM_PIDFILE"):
        Path(os.environ["FAKE_VLLM_PIDFILE"]).write_text(
            f"{os.getpid()} {engine.pid if engine else 0} {os.getpgid(0)}")
    print(f"fake vLLM server {os.getpid()} loading", flush=True)
    time.sleep(float(os.environ.get("FAKE_VLLM_STARTUP_S", "0")))
    if os.environ.get("FAKE_VLLM_FAIL"):
        print(os.environ["FAKE_VLLM_FAIL"], flush=True)
        sys.exit(3)
    from tests.rollout.fake_peer import FakePeer

    FakePeer(port=args.port, max_model_len=512)
    print(f"fake vLLM server listening on {args.port}", flush=True)
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main()
