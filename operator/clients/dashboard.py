"""Async client for the Ray dashboard's Serve REST API (aiohttp only: the operator never imports ray).

Endpoints used:
  PUT /api/serve/applications/   the whole declarative Serve config (ServeDeploySchema); apps left out are deleted
  GET /api/serve/applications/   ServeInstanceDetails JSON (an empty schema when Serve is not running)
  GET /api/ray/version           answers as soon as the dashboard is up

Every answer is read by chunks and at most MAX_ANSWER_BYTES of it (a Content-Length over it is refused before
reading): a broken or hostile dashboard cannot make the operator hold an unbounded body in memory.

Errors, as a tree:

  DashboardError                  base class; raised as such when a 2xx answer is not the JSON object expected
  ├── DashboardAnswerTooLarge     an answer (of any status) over the client's byte limit; not retried
  ├── DashboardUnavailable        no usable answer: connection refused/reset, timeout, or 5xx once the retries are
  │                               used up (501 "Serve not installed" is not retried: it cannot heal by itself)
  └── DashboardRejected           4xx: the request itself is wrong, so it is never retried; `.status` and `.message`
      │                           (for 400 this is Serve's or pydantic's own text, e.g. a duplicate route_prefix)
      └── DashboardUnauthorized   401 (no token sent) or 403 (a wrong token) from Ray's token authentication: not a
                                  verdict on the request's content

Connection errors, timeouts and 5xx are retried with exponential backoff (backoff_s, 2*backoff_s, ... capped at
_MAX_BACKOFF_S). Retrying the PUT is safe because it is declarative: sending the same config twice is a no-op.
"""

import asyncio
import codecs
import json
import logging
from types import TracebackType
from typing import Any

import aiohttp
from yarl import URL

logger = logging.getLogger(__name__)

APPLICATIONS_PATH = "/api/serve/applications/"
VERSION_PATH = "/api/ray/version"

_MAX_BACKOFF_S = 10.0
MAX_ANSWER_BYTES = 8 * 1024 * 1024
"""The most of one answer the client reads: Serve's whole report of a large cluster is well under 1 MiB."""
_CHUNK_BYTES = 64 * 1024
# 5xx bodies are often whole tracebacks; keep log lines and exception texts readable.
_MAX_UNAVAILABLE_TEXT = 2000


class DashboardError(Exception):
    """Base of every error this client raises."""


class DashboardAnswerTooLarge(DashboardError):
    """The dashboard's answer is larger than the client reads; what came of it is dropped."""


class DashboardUnavailable(DashboardError):
    """The dashboard gave no usable answer (connection error, timeout, 5xx after retries)."""


class DashboardRejected(DashboardError):
    """The dashboard refused the request with a 4xx; `message` carries its own explanation."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"dashboard rejected the request with HTTP {status}: {message}")
        self.status = status
        self.message = message


class DashboardUnauthorized(DashboardRejected):
    """Ray's token authentication refused the request: no token (401) or not the cluster's token (403)."""


class _RetryableStatus(Exception):
    """Internal: a 5xx answer worth another try."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"HTTP {status}: {text[:_MAX_UNAVAILABLE_TEXT]}")
        self.status = status


class DashboardClient:
    """Talks to one Ray cluster's dashboard, e.g. `http://raycluster-head-svc.ns.svc:8265`.

    `token` is the cluster's Ray auth token, sent as `Authorization: Bearer <token>` (Ray's token authentication);
    None sends none. It is kept out of the client's repr and log lines.
    `retries` counts the extra attempts after the first one. A `session` passed in is borrowed: `close()` leaves
    it open for its owner (tests and callers sharing one connection pool); otherwise the client owns its own.
    `max_answer_bytes` bounds what is read of any answer (DashboardAnswerTooLarge beyond it).
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = 10.0,
        retries: int = 3,
        backoff_s: float = 0.5,
        session: aiohttp.ClientSession | None = None,
        token: str | None = None,
        max_answer_bytes: int = MAX_ANSWER_BYTES,
    ) -> None:
        url = URL(base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"dashboard base_url must be an absolute http(s) URL, got {base_url!r}")
        if retries < 0 or timeout_s <= 0 or backoff_s < 0 or max_answer_bytes <= 0:
            raise ValueError("need retries >= 0, timeout_s > 0, backoff_s >= 0 and max_answer_bytes > 0")
        # Plain string joining keeps a path prefix (e.g. reaching the dashboard through the API server's service
        # proxy); URL.join would drop it.
        self._base_url = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._retries = retries
        self._backoff_s = backoff_s
        self._session = session
        self._owns_session = session is None
        self._closed = False
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._max_answer_bytes = max_answer_bytes

    def __repr__(self) -> str:
        return f"DashboardClient({self._base_url!r}, token={'set' if self._headers else 'none'})"

    @property
    def base_url(self) -> str:
        return self._base_url

    async def put_applications(self, config: dict[str, Any]) -> None:
        """Submit the complete Serve config; applications missing from it are deleted by Serve."""
        await self._request("PUT", APPLICATIONS_PATH, config)

    async def get_applications(self) -> dict[str, Any]:
        """Return ServeInstanceDetails as a dict (keys `applications`, `proxies`, `controller_info`, ...)."""
        return self._json_object(await self._request("GET", APPLICATIONS_PATH), APPLICATIONS_PATH)

    async def get_version(self) -> dict[str, Any]:
        """Return the dashboard's version info (`version`, `ray_version`, `ray_commit`, `session_name`)."""
        return self._json_object(await self._request("GET", VERSION_PATH), VERSION_PATH)

    async def close(self) -> None:
        self._closed = True
        if self._owns_session and self._session is not None:
            await self._session.close()
        self._session = None

    async def __aenter__(self) -> "DashboardClient":
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _get_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("DashboardClient is closed")
        if self._session is None:
            # Created lazily: aiohttp wants a running event loop when a session is born.
            self._session = aiohttp.ClientSession()
        return self._session

    async def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> str:
        """Send one request with retries; return the 2xx body text or raise a DashboardError."""
        url = self._base_url + path
        attempts = self._retries + 1
        last_error: Exception | None = None
        for attempt in range(attempts):
            if attempt:
                delay = min(self._backoff_s * 2 ** (attempt - 1), _MAX_BACKOFF_S)
                logger.warning("%s %s failed (%s); retry %d/%d in %.2fs",
                               method, url, last_error, attempt, self._retries, delay)
                await asyncio.sleep(delay)
            try:
                return await self._attempt(method, url, body)
            except (aiohttp.ClientError, TimeoutError, _RetryableStatus) as e:
                last_error = e
        raise DashboardUnavailable(
            f"{method} {url}: no usable answer after {attempts} attempt(s): {_describe(last_error)}"
        ) from last_error

    async def _attempt(self, method: str, url: str, body: dict[str, Any] | None) -> str:
        session = self._get_session()
        async with session.request(method, url, json=body, timeout=self._timeout, headers=self._headers) as response:
            status = response.status
            raw = await self._read_bounded(response, f"{method} {url}")
            # A proxy in front may answer in any encoding; never let decoding hide the status.
            text = raw.decode(_charset(response), errors="replace")
        if 200 <= status < 300:
            return text
        if status in (401, 403):
            raise DashboardUnauthorized(status, text)
        if 400 <= status < 500:
            raise DashboardRejected(status, text)
        if status == 501:
            raise DashboardUnavailable(f"{method} {url}: HTTP 501: {text[:_MAX_UNAVAILABLE_TEXT]}")
        raise _RetryableStatus(status, text)

    async def _read_bounded(self, response: aiohttp.ClientResponse, what: str) -> bytes:
        """The answer's body, read by chunks, or DashboardAnswerTooLarge as soon as it passes the limit."""
        limit = self._max_answer_bytes
        declared = response.content_length
        if declared is not None and declared > limit:
            raise DashboardAnswerTooLarge(
                f"{what}: HTTP {response.status} answer of {declared} bytes is over the {limit}-byte limit; not read"
            )
        body = bytearray()
        async for chunk in response.content.iter_chunked(_CHUNK_BYTES):
            body += chunk
            if len(body) > limit:
                raise DashboardAnswerTooLarge(
                    f"{what}: HTTP {response.status} answer is over the {limit}-byte limit; read no further"
                )
        return bytes(body)

    @staticmethod
    def _json_object(text: str, path: str) -> dict[str, Any]:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as e:
            raise DashboardError(f"{path}: answer is not JSON: {text[:200]!r}") from e
        if not isinstance(value, dict):
            raise DashboardError(f"{path}: expected a JSON object, got {type(value).__name__}")
        return value


def _charset(response: aiohttp.ClientResponse) -> str:
    """The answer's declared charset when Python knows it, else UTF-8 (what Ray's dashboard sends)."""
    charset = response.charset or "utf-8"
    try:
        codecs.lookup(charset)
    except LookupError:
        return "utf-8"
    return charset


def _describe(error: Exception | None) -> str:
    # Some aiohttp errors (e.g. a bare timeout) stringify to "", which makes a useless log line.
    if error is None:
        return "unknown error"
    return str(error) or type(error).__name__
