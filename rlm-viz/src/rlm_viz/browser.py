"""Headless Chromium over the DevTools protocol, for the dashboard's browser test and ``bench/viz_load.py``.

One browser session per :class:`Chromium`: it opens a URL and polls the live page (its HTML or
text) until a condition holds or a deadline passes, so a Streamlit page, which renders over a
websocket after the page has loaded, is judged in real time, not after a guessed
``--virtual-time-budget``.  It also counts the bytes the page received over websockets (what the
server sent to the browser) and takes screenshots.  Needs the ``websockets`` package (a dependency
of Streamlit); imports no Streamlit.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable
from typing import Any

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1400,1800")

#: the element Streamlit shows while a script run is in progress
RUNNING_JS = "!!document.querySelector('[data-testid=\"stStatusWidget\"]')"


def find_chromium() -> str | None:
    """The Chromium executable on PATH (``scripts/ci-viz-deps.sh`` installs it), else None."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


class BrowserError(RuntimeError):
    """Chromium did not start, or a DevTools command failed."""


class Chromium:
    """A headless Chromium with one page, driven over its DevTools websocket (a context manager)."""

    def __init__(self, executable: str | None = None, *, profile: str | None = None,
                 start_timeout: float = 60.0) -> None:
        self.executable = executable or find_chromium()
        if not self.executable:
            raise BrowserError("chromium is not installed: run scripts/ci-viz-deps.sh")
        self._own_profile = profile is None  # a temporary profile, removed on exit
        self.profile = profile or tempfile.mkdtemp(prefix="rlm-viz-chromium-")
        self.start_timeout = start_timeout
        self.ws_bytes = 0  # bytes of websocket frames the page received
        self._ids = itertools.count(1)
        self._proc: subprocess.Popen | None = None
        self._ws: Any = None
        self._closing = contextlib.ExitStack()
        self._session = ""

    def __enter__(self) -> Chromium:
        from websockets.sync.client import connect

        port_file = os.path.join(self.profile, "DevToolsActivePort")
        if os.path.exists(port_file):
            os.remove(port_file)
        self._proc = subprocess.Popen(
            [self.executable, *FLAGS, f"--user-data-dir={self.profile}", "--remote-debugging-port=0",
             "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + self.start_timeout
        while not _complete(port_file):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise BrowserError(f"chromium did not open its DevTools port in {self.start_timeout:g} s")
            time.sleep(0.1)
        try:
            with open(port_file, encoding="utf-8") as fh:
                port, path = fh.read().split()[:2]
            self._ws = self._closing.enter_context(
                connect(f"ws://127.0.0.1:{port}{path}", max_size=None, open_timeout=self.start_timeout))
            page = next(t for t in self._send("Target.getTargets")["targetInfos"] if t["type"] == "page")
            self._session = self._send("Target.attachToTarget", targetId=page["targetId"],
                                       flatten=True)["sessionId"]
            self.call("Page.enable")
            self.call("Network.enable")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._closing.close()
        self._ws = None
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._own_profile:
            shutil.rmtree(self.profile, ignore_errors=True)

    # --- DevTools -------------------------------------------------------------------------------

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one command to the page; its result."""
        return self._send(method, session=self._session, **params)

    def _send(self, method: str, session: str = "", **params: Any) -> dict[str, Any]:
        msg_id = next(self._ids)
        self._ws.send(json.dumps({"id": msg_id, "method": method, "params": params,
                                  **({"sessionId": session} if session else {})}))
        while True:
            reply = json.loads(self._ws.recv(timeout=120))
            if reply.get("id") == msg_id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error'].get('message')}")
                return reply.get("result", {})
            if reply.get("method") == "Network.webSocketFrameReceived":
                self.ws_bytes += len(reply["params"]["response"].get("payloadData", ""))

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression}: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    # --- the page -------------------------------------------------------------------------------

    def open(self, url: str) -> None:
        self.ws_bytes = 0
        self.call("Page.navigate", url=url)

    def html(self) -> str:
        """The page's DOM now, as ``--dump-dom`` prints it."""
        return self.evaluate("document.documentElement ? document.documentElement.outerHTML : ''") or ""

    def running(self) -> bool:
        """True while Streamlit shows a script run in progress."""
        return bool(self.evaluate(RUNNING_JS))

    def wait_for(self, ready: Callable[[str], bool], timeout: float, interval: float = 0.25) -> tuple[bool, str]:
        """Poll the DOM until ``ready(html)`` or ``timeout`` seconds: (whether it held, the last DOM)."""
        deadline = time.monotonic() + timeout
        while True:
            dom = self.html()
            if ready(dom):
                return True, dom
            if time.monotonic() > deadline:
                return False, dom
            time.sleep(interval)

    def screenshot(self, path: str) -> str:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        with open(path, "wb") as fh:
            fh.write(base64.b64decode(data))
        return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for a dashboard under test)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_http(url: str, proc: subprocess.Popen[Any] | None = None, timeout: float = 60) -> None:
    """Wait until the Streamlit server at ``url`` answers its health check; AssertionError when ``proc``
    (the server's process) exits first or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the dashboard's process exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer in {timeout} s")


@contextlib.contextmanager
def dashboard(argv: list[str], port: int, stderr_path: str) -> Any:
    """Run ``argv`` (an ``rlm visualize ... --port PORT`` command line) in its own process group, its stderr
    in ``stderr_path``; yield its URL once it answers; stop it (SIGTERM, then SIGKILL after 15 s) on exit."""
    with open(stderr_path, "w", encoding="utf-8") as err:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url, proc)
        yield url
    finally:
        proc.terminate()  # rlm visualize stops its Streamlit child on SIGTERM
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()


def _complete(port_file: str) -> bool:
    try:
        with open(port_file, encoding="utf-8") as fh:
            return len(fh.read().split()) >= 2
    except OSError:
        return False
