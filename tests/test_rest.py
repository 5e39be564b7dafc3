"""lab.net.rest against a real aiohttp server on 127.0.0.1: GET, POST, JSON-RPC, Retry-After, timeouts, errors."""
from __future__ import annotations

import asyncio
import random
import time

import aiohttp
import pytest
from aiohttp import web

from lab.net import rest
from lab.net.backoff import Backoff


def run(coro):
    return asyncio.run(coro)


async def with_server(handlers, body):
    app = web.Application()
    for method, path, handler in handlers:
        app.router.add_route(method, path, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        async with aiohttp.ClientSession() as session:
            return await body(session, f"http://127.0.0.1:{port}")
    finally:
        await runner.cleanup()


def test_get_and_post_json():
    async def hello(request):
        return web.json_response({"q": request.query.get("x")}, headers={"X-Venue": "ok"})

    async def echo(request):
        return web.json_response({"got": await request.json()}, status=201)

    async def body(s, base):
        r = await rest.get(s, base + "/hello?x=1")
        assert r.status == 200 and r.ok and r.json() == {"q": "1"} and r.headers["X-Venue"] == "ok"
        r = await rest.post(s, base + "/echo", json={"a": [1, 2]})
        assert r.status == 201 and r.json() == {"got": {"a": [1, 2]}}

    run(with_server([("GET", "/hello", hello), ("POST", "/echo", echo)], body))


def test_jsonrpc_result_error_object_and_id_mismatch():
    async def node(request):
        req = await request.json()
        assert req["jsonrpc"] == "2.0"
        if req["method"] == "eth_blockNumber":
            return web.json_response({"jsonrpc": "2.0", "id": req["id"], "result": "0x10"})
        if req["method"] == "bad_id":
            return web.json_response({"jsonrpc": "2.0", "id": req["id"] + 1000, "result": 1})
        return web.json_response({"jsonrpc": "2.0", "id": req["id"], "error": {"code": -32601, "message": "Method not found"}})

    async def body(s, base):
        assert await rest.jsonrpc(s, base + "/rpc", "eth_blockNumber") == "0x10"
        with pytest.raises(rest.JsonRpcError, match="error -32601: Method not found") as e:
            await rest.jsonrpc(s, base + "/rpc", "eth_nothing", ["x"])
        assert e.value.code == -32601
        with pytest.raises(rest.JsonRpcError, match="is not the request id"):
            await rest.jsonrpc(s, base + "/rpc", "bad_id")

    run(with_server([("POST", "/rpc", node)], body))


def test_429_with_retry_after_then_200_is_retried_after_the_stated_delay():
    calls = []

    async def limited(request):
        calls.append(time.monotonic())
        if len(calls) == 1:
            return web.Response(status=429, headers={"Retry-After": "0.3"}, text="slow down")
        return web.json_response({"ok": True})

    async def body(s, base):
        b = Backoff(0.001, 0.002, max_attempts=3, rng=random.Random(0))
        r = await rest.fetch_with_retry(s, "GET", base + "/x", backoff=b)
        assert r.status == 200 and r.attempts == 2 and r.waited == [0.3]
        assert calls[1] - calls[0] >= 0.29

    run(with_server([("GET", "/x", limited)], body))


def test_body_declared_rate_limit_uses_the_venue_hook():
    calls = []

    async def kraken_like(request):
        calls.append(1)
        if len(calls) < 3:
            return web.json_response({"error": ["EAPI:Rate limit exceeded"]})
        return web.json_response({"error": [], "result": {}})

    def hook(status, body):
        return 0.05 if b"Rate limit" in body else None

    async def body(s, base):
        r = await rest.fetch_with_retry(s, "GET", base + "/x", retry_after=hook,
                                        backoff=Backoff(0.001, 0.001, max_attempts=5, rng=random.Random(0)))
        assert r.status == 200 and r.attempts == 3 and r.waited == [0.05, 0.05]

    run(with_server([("GET", "/x", kraken_like)], body))


def test_timeout_is_a_clear_error_without_the_query_string():
    async def slow(request):
        await asyncio.sleep(0.6)
        return web.Response(text="late")

    async def body(s, base):
        with pytest.raises(rest.RestError) as e:
            await rest.get(s, base + "/slow?apikey=SECRET", timeout=0.2, headers={"API-Key": "SECRET2"})
        msg = str(e.value)
        assert msg == f"GET {base}/slow: timed out after 0.2s"
        assert "SECRET" not in msg and "\n" not in msg

    run(with_server([("GET", "/slow", slow)], body))


def test_500_is_a_clear_error_after_the_retries():
    calls = []

    async def broken(request):
        calls.append(1)
        return web.Response(status=500, text="boom")

    async def body(s, base):
        r = await rest.fetch_with_retry(s, "GET", base + "/b?key=SECRET",
                                        backoff=Backoff(0.001, 0.001, max_attempts=2, rng=random.Random(0)))
        assert r.status == 500 and r.attempts == 3 and len(calls) == 3
        with pytest.raises(rest.RestError) as e:
            rest.raise_for_status(r, "GET", base + "/b?key=SECRET")
        assert str(e.value) == f"GET {base}/b: HTTP 500" and e.value.status == 500

    run(with_server([("GET", "/b", broken)], body))


def test_unreachable_is_a_clear_error():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    async def body():
        async with aiohttp.ClientSession() as s:
            with pytest.raises(rest.RestError, match=r"^GET http://127.0.0.1:\d+/x: unreachable .*\(2 attempts\)$"):
                await rest.fetch_with_retry(s, "GET", f"http://127.0.0.1:{port}/x?k=1",
                                            backoff=Backoff(0.001, 0.001, max_attempts=1))

    run(body())
