"""JSON over HTTP to one server, with timeouts and bounded retries (stdlib ``http.client`` only).

Connection refused, reset or timed out, and HTTP 408, 429, 500, 502, 503, 504 are retried ``max_retries``
times with exponential backoff; any other error (400, 401, 404) fails at once, as a repeat would.
"""

from __future__ import annotations

import http.client
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class RequestFailed(Exception):
    """A request to a server failed; ``detail`` says how, ``status`` is the HTTP status if any."""

    def __init__(self, detail: str, *, transient: bool, status: int | None = None):
        super().__init__(detail)
        self.detail = detail
        self.transient = transient
        self.status = status


def normalize_url(url: str) -> str:
    """``http://h:p`` from ``http://h:p/``, ``http://h:p/v1`` or ``h:p`` (the OpenAI base URL form)."""
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url
    if url.endswith("/v1"):
        url = url[:-3]
    return url


@dataclass
class ServerClient:
    """Requests to the server at ``url`` (its base URL, without ``/v1``)."""

    url: str
    connect_timeout_s: float = 10.0
    request_timeout_s: float = 600.0
    max_retries: int = 2
    retry_backoff_s: float = 1.0
    api_key: str | None = None

    def __post_init__(self):
        self.url = normalize_url(self.url)
        parts = urlsplit(self.url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port
        self._prefix = parts.path

    def request(self, method: str, path: str, body: Any = None, *, timeout_s: float | None = None,
                retries: int | None = None) -> Any:
        """Send one request (retrying transient failures); return the parsed JSON answer (None if empty).
        Raises :class:`RequestFailed` after the last try."""
        retries = self.max_retries if retries is None else retries
        delay = self.retry_backoff_s
        for attempt in range(retries + 1):
            try:
                return self._once(method, path, body, timeout_s or self.request_timeout_s)
            except RequestFailed as err:
                if not err.transient or attempt == retries:
                    if attempt:
                        err.detail += f" (after {attempt + 1} tries)"
                    raise
            time.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")

    def _once(self, method: str, path: str, body: Any, timeout_s: float) -> Any:
        cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        conn = cls(self._host, self._port, timeout=self.connect_timeout_s)
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        try:
            try:
                conn.connect()
            except TimeoutError:
                raise RequestFailed(f"no connection within {self.connect_timeout_s:g} s", transient=True) from None
            conn.sock.settimeout(timeout_s)
            try:
                conn.request(method, self._prefix + path, body=data, headers=headers)
                resp = conn.getresponse()
                raw = resp.read()
            except TimeoutError:
                raise RequestFailed(f"no answer to {method} {path} within {timeout_s:g} s",
                                    transient=True) from None
        except ConnectionRefusedError:
            raise RequestFailed("connection refused (is the server running?)", transient=True) from None
        except (OSError, http.client.HTTPException) as err:
            raise RequestFailed(f"{type(err).__name__}: {err}".rstrip(": "), transient=True) from None
        finally:
            conn.close()
        if resp.status >= 400:
            raise RequestFailed(f"HTTP {resp.status} on {method} {path}: {_error_message(raw)}",
                                transient=resp.status in TRANSIENT_STATUS, status=resp.status)
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise RequestFailed(f"answer to {method} {path} is not JSON: {raw[:120]!r}", transient=False) from None


def _error_message(raw: bytes) -> str:
    """The server's own error text (vLLM: {"error": {"message": ...}}; FastAPI: {"detail": ...})."""
    try:
        data = json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace").strip()[:200] or "(empty body)"
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])[:300]
        if isinstance(err, str):
            return err[:300]
        if data.get("detail"):
            return str(data["detail"])[:300]
        if data.get("message"):
            return str(data["message"])[:300]
    return str(data)[:200]
