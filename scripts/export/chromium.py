"""Headless Chromium driven over the DevTools protocol (websocket-client), as scripts/serve-test/
browser.py drives it: one browser for many pages, every wait bounded, loopback only (the debugging
port listens on 127.0.0.1; the exported pages are opened from disk with file://)."""
import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request

import websocket


class Chromium:
    def __init__(self):
        self.profile = tempfile.mkdtemp(prefix="charrnn-export-chromium-")
        self.proc = subprocess.Popen(
            ["chromium", "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
             "--disable-extensions", "--disable-background-networking", "--disable-sync", "--metrics-recording-only",
             "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
             "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", "--user-data-dir=" + self.profile,
             "--window-size=1100,900", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            active = os.path.join(self.profile, "DevToolsActivePort")
            deadline = time.time() + 30
            while not os.path.exists(active) and time.time() < deadline:
                time.sleep(0.1)
            devport = int(open(active).read().split()[0])
            targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{devport}/json", timeout=10))
            page = next(t for t in targets if t["type"] == "page")
            self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=120, suppress_origin=True)
            self.ids = iter(range(1, 10 ** 9))
            self.cdp("Page.enable")
            self.cdp("Runtime.enable")
        except BaseException:
            self.close()
            raise

    def cdp(self, method, **params):
        i = next(self.ids)
        self.ws.send(json.dumps({"id": i, "method": method, "params": params}))
        while True:
            m = json.loads(self.ws.recv())
            if m.get("id") == i:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})

    def js(self, expr):
        r = self.cdp("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"page script: {r['exceptionDetails'].get('exception', {}).get('description', r['exceptionDetails'])}")
        return r.get("result", {}).get("value")

    def wait_for(self, expr, seconds):
        end = time.time() + seconds
        while time.time() < end:
            if self.js(expr):
                return True
            time.sleep(0.02)
        return False

    def open(self, path, seconds=60):
        """Opens a file from disk; returns the seconds until its `window.charrnnReady` exists (None: never)."""
        t0 = time.time()
        self.cdp("Page.navigate", url="file://" + os.path.abspath(path))
        ok = self.wait_for("document.readyState === 'complete' && window.charrnnReady !== undefined", seconds)
        return time.time() - t0 if ok else None

    def click(self, selector):
        box = self.js(f"(() => {{ const r = document.querySelector('{selector}').getBoundingClientRect();"
                      f" return [r.x + r.width / 2, r.y + r.height / 2]; }})()")
        for kind in ("mousePressed", "mouseReleased"):
            self.cdp("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left", clickCount=1)

    def type(self, text):
        self.cdp("Input.insertText", text=text)

    def screenshot(self, path):
        shot = self.cdp("Page.captureScreenshot", format="png")
        with open(path, "wb") as f:
            f.write(base64.b64decode(shot["data"]))

    def close(self):
        try:
            if getattr(self, "ws", None):
                self.ws.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            shutil.rmtree(self.profile, ignore_errors=True)
