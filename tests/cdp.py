"""A tiny Chrome DevTools Protocol client for the browser tests: start headless Chromium, open a
page, evaluate JavaScript, take screenshots. aiohttp (a lab dependency) speaks the WebSocket;
nothing is downloaded (Debian's `chromium` is the browser)."""
from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time

import aiohttp


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class Browser:
    """`async with Browser() as b: page = await b.page(url)`."""

    def __init__(self, width: int = 1400, height: int = 1000):
        self.width, self.height = width, height
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None
        self._tmp = tempfile.mkdtemp(prefix="lab-cdp-")

    async def __aenter__(self) -> "Browser":
        exe = chromium_path()
        if exe is None:
            raise RuntimeError("no chromium on PATH")
        self.proc = subprocess.Popen(
            [exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
             "--disable-extensions", "--hide-scrollbars", f"--window-size={self.width},{self.height}",
             "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", f"--user-data-dir={self._tmp}",
             "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        port_file = os.path.join(self._tmp, "DevToolsActivePort")
        while time.monotonic() < deadline:
            if os.path.exists(port_file):
                lines = open(port_file).read().split()
                if lines:
                    self.port = int(lines[0])
                    break
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited: {self.proc.stderr.read()[-2000:]}")
            await asyncio.sleep(0.05)
        if self.port is None:
            raise RuntimeError("chromium did not open its DevTools port")
        self._http = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc) -> None:
        await self._http.close()
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self._tmp, ignore_errors=True)

    async def page(self, url: str) -> "Page":
        async with self._http.get(f"http://127.0.0.1:{self.port}/json/list") as resp:
            targets = await resp.json(content_type=None)
        target = next(t for t in targets if t.get("type") == "page")
        ws = await self._http.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0)
        page = Page(ws)
        page.start()
        await page.send("Page.enable")
        await page.send("Runtime.enable")
        await page.send("Emulation.setDeviceMetricsOverride", width=self.width, height=self.height,
                        deviceScaleFactor=1, mobile=False)
        await page.send("Page.navigate", url=url)
        return page


class Page:
    def __init__(self, ws):
        self.ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future] = {}
        self.events: list[dict] = []

    def start(self) -> None:
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            doc = json.loads(msg.data)
            fut = self._pending.pop(doc.get("id"), None)
            if fut is not None and not fut.done():
                fut.set_result(doc)
            elif "method" in doc:
                self.events.append(doc)
                del self.events[:-200]

    async def send(self, method: str, timeout: float = 30.0, **params) -> dict:
        i = next(self._ids)
        fut = asyncio.get_running_loop().create_future()
        self._pending[i] = fut
        await self.ws.send_str(json.dumps({"id": i, "method": method, "params": params}))
        doc = await asyncio.wait_for(fut, timeout)
        if "error" in doc:
            raise RuntimeError(f"{method}: {doc['error']}")
        return doc.get("result", {})

    async def eval(self, expression: str):
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result.get("result", {}).get("value")

    async def screenshot(self, path: str) -> None:
        data = (await self.send("Page.captureScreenshot", format="png"))["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))

    async def close(self) -> None:
        self._reader.cancel()
        await self.ws.close()
