#!/usr/bin/env python3
"""The web page of `charrnn serve` in headless Chromium, driven over the DevTools protocol.

Loads http://127.0.0.1:PORT/, waits for the model description, types a prompt (Input.insertText,
as a keyboard would), clicks Generate, checks that streamed text appears and grows, clicks Stop,
checks that it stopped, and saves a screenshot. Loopback only; every wait is bounded.

    browser.py PORT SCREENSHOT.png            exit 0 = every check passed
Needs: chromium (Debian), websocket-client (PyPI).
"""
import base64, re, json, os, shutil, subprocess, sys, tempfile, time, urllib.request

import websocket

PORT, SHOT = int(sys.argv[1]), sys.argv[2]
failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    if not ok:
        failures.append(what)


profile = tempfile.mkdtemp(prefix="charrnn-chromium-")
chrome = subprocess.Popen(
    ["chromium", "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
     "--disable-extensions", "--disable-background-networking", "--disable-sync", "--metrics-recording-only",
     "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", "--user-data-dir=" + profile,
     "--window-size=1100,800", "about:blank"],
    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    active = os.path.join(profile, "DevToolsActivePort")
    deadline = time.time() + 30
    while not os.path.exists(active) and time.time() < deadline:
        time.sleep(0.1)
    devport = int(open(active).read().split()[0])
    targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{devport}/json", timeout=10))
    page = next(t for t in targets if t["type"] == "page")
    ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=20, suppress_origin=True)
    ids = iter(range(1, 10**6))

    def cdp(method, **params):
        i = next(ids)
        ws.send(json.dumps({"id": i, "method": method, "params": params}))
        while True:
            m = json.loads(ws.recv())
            if m.get("id") == i:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})

    def js(expr):
        r = cdp("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        return r.get("result", {}).get("value")

    def wait_for(expr, seconds):
        end = time.time() + seconds
        while time.time() < end:
            if js(expr):
                return True
            time.sleep(0.05)
        return False

    def click(selector):
        box = js(f"(() => {{ const r = document.querySelector('{selector}').getBoundingClientRect();"
                 f" return [r.x + r.width / 2, r.y + r.height / 2]; }})()")
        for kind in ("mousePressed", "mouseReleased"):
            cdp("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left", clickCount=1)

    cdp("Page.enable")
    cdp("Runtime.enable")
    cdp("Page.navigate", url=f"http://127.0.0.1:{PORT}/")
    check(wait_for("document.readyState === 'complete'", 15), "page loads")
    check(wait_for("!document.getElementById('model').textContent.includes('loading')", 10), "model description is filled in")
    desc = js("document.getElementById('model').textContent")
    print("     model:", desc)
    check("lstm" in desc and "hidden" in desc and "charrnn" in desc, "description names cell, size and version")
    external = js("[...document.querySelectorAll('[src],[href],link')].map(e => e.src || e.href).filter(u => u && !u.startsWith(location.origin))")
    check(external == [], f"no external resources ({external})")
    # type a prompt as a keyboard would, set the length
    js("document.getElementById('prompt').focus()")
    cdp("Input.insertText", text="the ")
    check(js("document.getElementById('prompt').value") == "the ", "typed prompt is in the box")
    js("document.getElementById('length').value = '3000'")
    click("#start")
    check(wait_for("document.getElementById('output').textContent.length > 8", 10), "streamed text appears")
    n1 = js("document.getElementById('output').textContent.length")
    time.sleep(0.5)
    n2 = js("document.getElementById('output').textContent.length")
    check(n2 > n1, f"streamed text grows ({n1} → {n2} characters)")
    check(js("document.getElementById('stop').disabled") is False, "Stop is enabled while generating")
    click("#stop")
    check(wait_for("document.getElementById('status').textContent.startsWith('stopped')", 5), "Stop stops the stream")
    n3 = js("document.getElementById('output').textContent.length")
    time.sleep(0.4)
    n4 = js("document.getElementById('output').textContent.length")
    check(n3 == n4 and n4 < 3004, f"no more text after Stop ({n3} → {n4})")
    check(js("document.getElementById('output').textContent.startsWith('the ')"), "output starts with the prompt")
    status = js("document.getElementById('status').textContent")
    check(re.search(r"seed [0-9]+$", status) is not None, f"the seed used is shown ({status!r})")
    # the controls: Generate and Stop on one row at 1100 and 1200 px, top-k and seed fields, the shortcut shown
    for width in (1100, 1200):
        cdp("Emulation.setDeviceMetricsOverride", width=width, height=800, deviceScaleFactor=1, mobile=False)
        same = js("document.getElementById('start').getBoundingClientRect().top === document.getElementById('stop').getBoundingClientRect().top")
        check(same, f"Generate and Stop on one row at {width} px")
    check(js("!!document.getElementById('topK') && !!document.getElementById('seed')"), "top-k and seed fields")
    check("Ctrl" in js("document.querySelector('.actions').textContent"), "the Ctrl+Enter shortcut is shown")
    # a seed typed in is sent (its digits exactly) and shown back
    js("document.getElementById('seed').value = '18446744073709551615'; document.getElementById('length').value = '5'")
    click("#start")
    used = wait_for("document.getElementById('status').textContent.endsWith('seed 18446744073709551615')", 10)
    status = js("document.getElementById('status').textContent")
    check(used, f"the typed seed is used ({status!r})")
    shot = cdp("Page.captureScreenshot", format="png")
    with open(SHOT, "wb") as f:
        f.write(base64.b64decode(shot["data"]))
    check(os.path.getsize(SHOT) > 5000, f"screenshot saved ({SHOT})")
    ws.close()
except Exception as e:  # a broken step is a failure, not a crash of the script
    check(False, f"browser driver: {type(e).__name__}: {e}")
finally:
    chrome.terminate()
    try:
        chrome.wait(10)
    except subprocess.TimeoutExpired:
        chrome.kill()
    shutil.rmtree(profile, ignore_errors=True)
sys.exit(1 if failures else 0)
