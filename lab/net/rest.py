"""REST over aiohttp for every venue: GET, POST (JSON body), JSON-RPC 2.0 calls, and
`fetch_with_retry` (lab.net.backoff, `Retry-After` on 429/418/503, a venue's body-declared wait).

Errors are one line and carry no secrets: the method, the URL's path (never its query string)
and the reason; request headers are never included.
"""
from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable
from urllib.parse import urlsplit

import aiohttp
import orjson

from lab.net.backoff import RETRY_AFTER_STATUSES, Backoff, RetriesExhausted

DEFAULT_TIMEOUT = 10.0


class RestError(Exception):
    """A REST call failed: unreachable, timed out, or an error status (`status`, 0 = no answer)."""

    def __init__(self, message: str, status: int = 0):
        super().__init__(message)
        self.status = status


class JsonRpcError(RestError):
    """A JSON-RPC error object (`code`, `message`, `data`) or a malformed JSON-RPC answer."""

    def __init__(self, message: str, code: int | None = None, data: Any = None):
        super().__init__(message, 200)
        self.code = code
        self.data = data


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    attempts: int = 1
    waited: list[float] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        return orjson.loads(self.body)


def safe_url(url: str) -> str:
    """The URL without its query string or credentials (what error messages show)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}" if parts.scheme else parts.path


async def request(session: aiohttp.ClientSession, method: str, url: str, *, json: Any = None,
                  headers: dict[str, str] | None = None, timeout: float = DEFAULT_TIMEOUT) -> Response:
    """One HTTP call; RestError (one line) when there is no answer. Any status is returned."""
    data = orjson.dumps(json) if json is not None else None
    hdrs = dict(headers or {})
    if data is not None:
        hdrs.setdefault("Content-Type", "application/json")
    try:
        async with session.request(method, url, data=data, headers=hdrs,
                                   timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
            body = await resp.read()
            return Response(resp.status, dict(resp.headers), body)
    except asyncio.TimeoutError:
        raise RestError(f"{method} {safe_url(url)}: timed out after {timeout:g}s") from None
    except aiohttp.ClientConnectorError as exc:
        raise RestError(f"{method} {safe_url(url)}: unreachable ({type(exc.os_error).__name__})") from None
    except (aiohttp.ClientError, OSError) as exc:
        raise RestError(f"{method} {safe_url(url)}: {type(exc).__name__}") from None


async def get(session, url: str, **kw) -> Response:
    return await request(session, "GET", url, **kw)


async def post(session, url: str, json: Any = None, **kw) -> Response:
    return await request(session, "POST", url, json=json, **kw)


def raise_for_status(resp: Response, method: str, url: str) -> Response:
    if resp.status >= 400:
        raise RestError(f"{method} {safe_url(url)}: HTTP {resp.status}", resp.status)
    return resp


async def fetch_with_retry(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    json: Any = None,
    headers: dict[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    backoff: Backoff | None = None,
    retry_after: Callable[[int, bytes], float | None] | None = None,
    retry_statuses: frozenset[int] = RETRY_AFTER_STATUSES | {500, 502, 504},
    retry_unreachable: bool = True,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
) -> Response:
    """The call, retried with backoff on 429/418/503 (and 5xx), on no answer, and whenever the
    venue's `retry_after(status, body)` hook names a wait (a body-declared rate limit). Returns the
    last answer when a status is not retried; RestError once `backoff.max_attempts` is used up."""
    backoff = backoff or Backoff(base=0.25, cap=10.0, max_attempts=5, reset_after=None)
    waited: list[float] = []
    attempts = 0
    while True:
        attempts += 1
        try:
            resp = await request(session, method, url, json=json, headers=headers, timeout=timeout)
        except RestError as exc:
            if not retry_unreachable:
                raise
            try:
                delay = backoff.next_delay()
            except RetriesExhausted:
                raise RestError(f"{exc} ({attempts} attempts)") from None
        else:
            body_wait = retry_after(resp.status, resp.body) if retry_after is not None else None
            if body_wait is None and resp.status not in retry_statuses:
                resp.attempts, resp.waited = attempts, waited
                backoff.healthy()
                return resp
            try:
                delay = backoff.delay_for(resp.status, resp.headers, body_wait)
            except RetriesExhausted:
                resp.attempts, resp.waited = attempts, waited
                return resp
        waited.append(delay)
        await sleep(delay)


_rpc_ids = itertools.count(1)


async def jsonrpc(session: aiohttp.ClientSession, url: str, method: str, params: Any = None, *,
                  timeout: float = DEFAULT_TIMEOUT, headers: dict[str, str] | None = None,
                  backoff: Backoff | None = None) -> Any:
    """A JSON-RPC 2.0 call (Uniswap-style nodes): the `result`, or JsonRpcError for an error
    object, a mismatched id or a malformed answer; RestError for an HTTP failure."""
    rid = next(_rpc_ids)
    payload = {"jsonrpc": "2.0", "id": rid, "method": method, "params": [] if params is None else params}
    resp = await fetch_with_retry(session, "POST", url, json=payload, headers=headers, timeout=timeout,
                                  backoff=backoff)
    raise_for_status(resp, "POST", url)
    try:
        answer = resp.json()
    except orjson.JSONDecodeError:
        raise JsonRpcError(f"JSON-RPC {method} at {safe_url(url)}: answer is not JSON") from None
    if not isinstance(answer, dict):
        raise JsonRpcError(f"JSON-RPC {method} at {safe_url(url)}: answer is not an object")
    if answer.get("id") != rid:
        raise JsonRpcError(f"JSON-RPC {method} at {safe_url(url)}: answer id {answer.get('id')!r} is not the request id {rid}")
    err = answer.get("error")
    if err is not None:
        if isinstance(err, dict):
            code, msg = err.get("code"), err.get("message", "")
            raise JsonRpcError(f"JSON-RPC {method}: error {code}: {msg}", code, err.get("data"))
        raise JsonRpcError(f"JSON-RPC {method}: error {err!r}")
    if "result" not in answer:
        raise JsonRpcError(f"JSON-RPC {method} at {safe_url(url)}: answer has neither result nor error")
    return answer["result"]
