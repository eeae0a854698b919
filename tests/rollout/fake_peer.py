"""A FAKE HTTP peer that imitates the few vLLM endpoints octo calls, for testing the transport
logic of the ``vllm-server`` backend only (spreading, retries, timeouts, failover, headers,
weight-sync call order). It does not generate anything real: the real protocol is covered by
``test_vllm_server.py`` against a real vLLM server.

Completions are a pure function of the prompt so a test can tell which answer belongs to which
prompt: token ``k`` of sample ``j`` is ``(prompt[-1] + j + k) % 97 + 2``, log-prob ``-0.5``,
``finish_reason="length"``.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakePeer:
    def __init__(self, *, max_model_len: int = 128, port: int = 0):
        self.max_model_len = max_model_len
        self.requests: list[dict] = []  # {"method", "path", "body", "headers", "t"}
        self.fail_status: int | None = None  # answer every completion with this status
        self.fail_first = 0  # answer the first k completion requests with 503
        self.hang_s = 0.0  # sleep this long before answering a completion or a reload
        self.rpc_status: int | None = None  # answer /collective_rpc with this status
        self.garbage: str | None = None  # answer completions with: "not-json", "no-choices", "bad-ids", "abort"
        self._lock = threading.Lock()
        self._release = threading.Event()
        peer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                peer._record(self, None)
                if self.path == "/v1/models":
                    self._send(200, {"data": [{"id": "fake-model", "max_model_len": peer.max_model_len}]})
                elif self.path == "/health":
                    self._send(200, None, raw=b"")
                else:
                    self._send(404, {"detail": "Not Found"})

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                index = peer._record(self, body)
                if self.path == "/v1/completions":
                    if peer.hang_s:
                        peer._release.wait(peer.hang_s)
                    if peer.fail_status:
                        return self._send(peer.fail_status, {"error": {"message": "fake failure", "code": 0}})
                    if index < peer.fail_first:
                        return self._send(503, {"error": {"message": "fake overload"}})
                    if peer.garbage == "not-json":
                        return self._send(200, None, raw=b"<html>502 Bad Gateway</html>")
                    if peer.garbage == "no-choices":
                        return self._send(200, {"object": "error"})
                    answer = peer._completion(body)
                    for ch in answer["choices"]:
                        if peer.garbage == "bad-ids":
                            ch["token_ids"] = [10**9] * len(ch["token_ids"])
                        elif peer.garbage == "abort":
                            ch["finish_reason"] = "abort"
                    return self._send(200, answer)
                if self.path == "/collective_rpc":
                    if peer.hang_s:
                        peer._release.wait(peer.hang_s)
                    if peer.rpc_status:
                        return self._send(peer.rpc_status, {"detail": "Not Found"})
                    return self._send(200, {"results": [None]})
                if self.path == "/reset_prefix_cache":
                    return self._send(200, {"success": True})
                self._send(404, {"detail": "Not Found"})

            def _send(self, status, payload, raw: bytes | None = None):
                data = raw if raw is not None else json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    def _record(self, handler, body) -> int:
        with self._lock:
            index = sum(r["path"] == handler.path for r in self.requests)
            self.requests.append({"method": handler.command, "path": handler.path, "body": body,
                                  "headers": dict(handler.headers), "t": time.monotonic()})
            return index

    @staticmethod
    def _completion(body: dict) -> dict:
        prompt = body["prompt"]
        choices = []
        for j in range(body.get("n", 1)):
            ids = [(prompt[-1] + j + k) % 97 + 2 for k in range(body["max_tokens"])]
            choices.append({"index": j, "text": "", "token_ids": ids, "finish_reason": "length",
                            "logprobs": {"tokens": [f"token_id:{t}" for t in ids],
                                         "token_logprobs": [-0.5] * len(ids)}})
        return {"choices": choices}

    def paths(self, path: str) -> list[dict]:
        with self._lock:
            return [r for r in self.requests if r["path"] == path]

    def close(self) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()


def closed_port_url() -> str:
    """A localhost URL nothing listens on (connections are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def expected_ids(prompt: list[int], j: int, max_tokens: int) -> list[int]:
    return [(prompt[-1] + j + k) % 97 + 2 for k in range(max_tokens)]
