#!/usr/bin/env python3
"""Real clients and hostile connections against `charrnn serve` on loopback (bounded in count and time).

    clients.py openai PORT MODEL EXPECTED_TEXT     the official openai package: non-streaming and
                                                   streaming completions (seed 7, 60 tokens, prompt
                                                   "the ") must both give EXPECTED_TEXT
    clients.py logprobs PORT MODEL EVAL_TOTAL      the openai package with logprobs, echo and best_of:
                                                   echo + logprobs + max_tokens 0 of "the quick brown
                                                   fox" sums to EVAL_TOTAL (−loss × scored of `charrnn
                                                   eval --batch 1`); streamed chunks carry their own
                                                   tokens; best_of picks the best mean log p of n=best_of
    clients.py penalties PORT MODEL EXPECTED_TEXT  the openai package with frequency_penalty,
                                                   presence_penalty, logit_bias and (extra_body)
                                                   repetition_penalty + repeat_window, non-streaming
                                                   and streaming: both give EXPECTED_TEXT (charrnn
                                                   sample with the same flags); a banned newline
                                                   never appears; a bad logit_bias key is a 400
    clients.py connections PORT COUNT              COUNT connections opened and dropped: idle, half
                                                   a request line, partial headers, garbage, a body
                                                   cut short; then the server must still answer
    clients.py rss PORT PID N                      RSS of the server after 100 requests and after N
                                                   more (keep-alive and fresh connections, streaming
                                                   and not, n=2, stop strings): no growth beyond 2 MB
    clients.py disconnect PORT                     non-streaming and streaming completions whose
                                                   client closes the connection (FIN), resets it
                                                   (RST) or half-closes it while its row generates:
                                                   the row is free within 0.5 s (a paced server
                                                   would take 16 s for the 4000 tokens asked)
    clients.py http PORT                           HTTP/1.0 (answered in 1.0, never chunked, closed
                                                   unless keep-alive with a length), Expect:
                                                   100-continue answered, a malformed chunk size a
                                                   400 that closes, HEAD, 405 with Allow, favicon,
                                                   nested JSON and lone surrogates refused at once
    clients.py fdlimit PORT PID N                  N connections stuck in their headers against a
                                                   server started with a lower descriptor limit:
                                                   /health answers, the server does not spin
    clients.py timeouts PORT IDLE_SECONDS          a silent connection, one stuck in its headers and
                                                   one stuck in its body are all closed by the
                                                   server after about IDLE_SECONDS
"""
import socket, sys, time


def openai_check(port, model, expected):
    from openai import OpenAI
    client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", timeout=30, max_retries=0)
    ok = True
    r = client.completions.create(model=model, prompt="the ", max_tokens=60, temperature=0.8, seed=7)
    text = r.choices[0].text
    print(("ok   " if text == expected else "FAIL ") + f"openai non-streaming: {text!r}")
    ok &= text == expected
    ok &= r.usage.completion_tokens == 60 and r.choices[0].finish_reason == "length"
    chunks = list(client.completions.create(model=model, prompt="the ", max_tokens=60, temperature=0.8, seed=7, stream=True))
    streamed = "".join(c.choices[0].text for c in chunks if c.choices)
    good = streamed == expected and len(chunks) > 2
    print(("ok   " if good else "FAIL ") + f"openai streaming: {len(chunks)} chunks, {streamed!r}")
    ok &= good
    r = client.completions.create(model=model, prompt="the ", max_tokens=60, temperature=0.8, seed=7, n=2, stop=["o"])
    good = len(r.choices) == 2 and r.choices[0].text == expected.split("o")[0] and all("o" not in c.text for c in r.choices)
    print(("ok   " if good else "FAIL ") + f"openai n=2 with stop: {[c.text for c in r.choices]}")
    ok &= good
    try:
        client.completions.create(model=model, prompt="the ", max_tokens=10**7)
        print("FAIL openai: max_tokens over the cap was accepted")
        ok = False
    except Exception as e:
        good = getattr(e, "status_code", None) == 400 and "max_tokens" in str(e)
        print(("ok   " if good else "FAIL ") + f"openai sees the 400 error object: {e}")
        ok &= good
    return ok


def logprobs_check(port, model, eval_total):
    from openai import OpenAI
    client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", timeout=30, max_retries=0)
    ok = True
    def say(good, what):
        nonlocal ok
        print(("ok   " if good else "FAIL ") + what)
        ok &= bool(good)
    text = "the quick brown fox"
    r = client.completions.create(model=model, prompt=text, max_tokens=0, echo=True, logprobs=3)
    lp = r.choices[0].logprobs
    total = sum(lp.token_logprobs[1:])
    say(r.choices[0].text == text and "".join(lp.tokens) == text and lp.token_logprobs[0] is None
        and lp.text_offset == list(range(len(text))) and all(len(t) == 3 for t in lp.top_logprobs[1:])
        and abs(total - eval_total) <= 1e-4 * len(text) and r.usage.completion_tokens == 0,
        f"openai echo scoring: sum of token_logprobs {total:.6f}, charrnn eval --batch 1 {eval_total:.6f}")
    kw = dict(model=model, prompt="the ", max_tokens=40, temperature=0.9, seed=5, logprobs=2, stop=["o"])
    r = client.completions.create(**kw)
    c = r.choices[0]
    say("".join(c.logprobs.tokens) == c.text and len(c.logprobs.token_logprobs) == len(c.text)
        and all(len(t) == 2 for t in c.logprobs.top_logprobs), f"openai logprobs: {len(c.logprobs.tokens)} tokens, text {c.text!r}")
    chunks = [ch for ch in client.completions.create(stream=True, **kw) if ch.choices]
    streamed_tokens = [t for ch in chunks for t in ch.choices[0].logprobs.tokens]
    say(all("".join(ch.choices[0].logprobs.tokens) == ch.choices[0].text for ch in chunks)
        and streamed_tokens == c.logprobs.tokens
        and [x for ch in chunks for x in ch.choices[0].logprobs.token_logprobs] == c.logprobs.token_logprobs,
        f"openai streamed logprobs: {len(chunks)} chunks, each with its own tokens, together the non-streamed ones")
    kw = dict(model=model, prompt="the ", max_tokens=30, temperature=1.3, seed=11)
    alln = client.completions.create(n=3, logprobs=0, **kw)
    means = [sum(ch.logprobs.token_logprobs) / len(ch.text) for ch in alln.choices]
    best = client.completions.create(n=1, best_of=3, **kw)
    want = alln.choices[max(range(3), key=lambda i: means[i])].text
    say(best.choices[0].text == want and best.usage.completion_tokens == 90,
        f"openai best_of=3: the candidate of best mean log p ({max(means):.3f}), usage counts all 3")
    try:
        client.completions.create(model=model, prompt="a", logprobs=6)
        say(False, "openai: logprobs 6 was accepted")
    except Exception as e:
        say(getattr(e, "status_code", None) == 400 and "logprobs" in str(e), f"openai sees logprobs 6 refused: {e}")
    return ok


PENALTIES = dict(frequency_penalty=0.5, presence_penalty=0.3, logit_bias={"\n": -100, "e": 2},
                 extra_body={"repetition_penalty": 1.3, "repeat_window": 16})


def penalties_check(port, model, expected):
    from openai import OpenAI
    client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", timeout=30, max_retries=0)
    ok = True
    r = client.completions.create(model=model, prompt="the ", max_tokens=120, temperature=0.8, seed=7, **PENALTIES)
    good = r.choices[0].text == expected and r.usage.completion_tokens == 120
    print(("ok   " if good else "FAIL ") + f"openai penalties + logit_bias, non-streaming = sample: {r.choices[0].text!r}")
    ok &= good
    chunks = list(client.completions.create(model=model, prompt="the ", max_tokens=120, temperature=0.8, seed=7, stream=True, **PENALTIES))
    streamed = "".join(c.choices[0].text for c in chunks if c.choices)
    good = streamed == expected and len(chunks) > 2
    print(("ok   " if good else "FAIL ") + f"openai penalties + logit_bias, streaming: {len(chunks)} chunks, same text: {streamed == expected}")
    ok &= good
    # the newline banned by its token id (OpenAI's key form; id 0 is "\n" in a code-point-ordered vocabulary)
    for stream in (False, True):
        r = client.completions.create(model=model, prompt="the ", max_tokens=400, temperature=1.0, seed=3, n=2, logit_bias={"0": -100}, stream=stream)
        texts = ["", ""]
        for c in (r if stream else [r]):
            for ch in c.choices:
                texts[ch.index] += ch.text
        good = all(len(t) == 400 and "\n" not in t for t in texts)
        print(("ok   " if good else "FAIL ") + f"logit_bias {{'0': -100}} bans the newline ({'streaming' if stream else 'non-streaming'}, n=2, 400 tokens)")
        ok &= good
    for bad, param in (({"logit_bias": {"zz": 1}}, "logit_bias"), ({"frequency_penalty": 3}, "frequency_penalty"),
                       ({"extra_body": {"repetition_penalty": 0}}, "repetition_penalty")):
        try:
            client.completions.create(model=model, prompt="the ", max_tokens=5, **bad)
            print(f"FAIL openai: {bad} was accepted")
            ok = False
        except Exception as e:
            good = getattr(e, "status_code", None) == 400 and param in str(e)
            print(("ok   " if good else "FAIL ") + f"openai {bad} → 400 naming {param}: {e}")
            ok &= good
    return ok


def connections(port, count):
    payloads = [b"", b"GET / HT", b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n",
                b"\x00\xff\xfe garbage \r\n\r\n", b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"prompt\":",
                b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"X-Long: " + b"a" * 20000 + b"\r\n\r\n"]
    t0, opened = time.time(), 0
    batch = []
    for i in range(count):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(payloads[i % len(payloads)])
            batch.append(s)
            opened += 1
        except OSError as e:
            print(f"     connection {i}: {e}")
        if len(batch) >= 100:
            for s in batch:
                s.close()
            batch = []
        if time.time() - t0 > 60:
            break
    for s in batch:
        s.close()
    print(f"     opened and dropped {opened} connections in {time.time() - t0:.1f} s")
    return opened >= count * 0.9


def rss_kb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def rss(port, pid, n):
    import http.client, json
    bodies = [json.dumps({"prompt": "the ", "max_tokens": 8, "seed": 1}),
              json.dumps({"prompt": "a", "max_tokens": 8, "n": 2, "stop": ["e"]}),
              json.dumps({"prompt": "", "max_tokens": 8, "stream": True}),
              json.dumps({"prompt": 5})]
    conn = None

    def run(count, t_end):
        nonlocal conn
        for i in range(count):
            if time.time() > t_end:
                return False
            if conn is None or i % 50 == 0:
                if conn:
                    conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("POST", "/v1/completions", bodies[i % len(bodies)], {"Content-Type": "application/json"})
            conn.getresponse().read()
        return True

    t_end = time.time() + 240
    run(100, t_end)
    time.sleep(0.5)
    before = rss_kb(pid)
    done = run(n, t_end)
    time.sleep(0.5)
    after = rss_kb(pid)
    good = done and after - before <= 2048
    print(("ok   " if good else "FAIL ") + f"RSS after 100 requests {before / 1024:.1f} MB, after {n} more {after / 1024:.1f} MB"
          + ("" if done else " (time limit hit)"))
    return good


def health(port):
    import http.client, json
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("GET", "/health")
    d = json.loads(c.getresponse().read())
    c.close()
    return d["active_streams"] + d["queued"]


def disconnect(port):
    import json, struct
    ok = True
    for stream in (False, True):
        for how in ("close", "reset", "half-close"):
            body = json.dumps({"prompt": "the ", "max_tokens": 4000, "stream": stream}).encode()
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: %d\r\n\r\n" % len(body) + body)
            t_end = time.time() + 3
            while health(port) == 0 and time.time() < t_end:
                time.sleep(0.02)
            running = health(port)
            time.sleep(0.2)
            if how == "reset":
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            if how == "half-close":
                s.shutdown(socket.SHUT_WR)
            else:
                s.close()
            t0 = time.time()
            while health(port) != 0 and time.time() - t0 < 5:
                time.sleep(0.01)
            took = time.time() - t0
            good = running == 1 and took < 0.5
            print(("ok   " if good else "FAIL ") + f"{'streaming' if stream else 'non-streaming'} client {how}s: "
                  f"{running} row running, free after {took * 1000:.0f} ms")
            ok &= good
            if how == "half-close":
                s.close()
    return ok


def timeouts(port, idle):
    cases = {"silent": b"", "headers": b"GET /health HTTP/1.1\r\nHost: x\r\n",
             "body": b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"}
    socks = {}
    for name, payload in cases.items():
        s = socket.create_connection(("127.0.0.1", port), timeout=idle + 10)
        s.sendall(payload)
        socks[name] = s
    t0, ok = time.time(), True
    for name, s in socks.items():
        try:
            data = s.recv(4096)
            took = time.time() - t0
            good = took < idle + 5 and not data.startswith(b"HTTP/1.1 200")
            print(("ok   " if good else "FAIL ") + f"{name}: closed by the server after {took:.1f} s")
            ok &= good
        except socket.timeout:
            print(f"FAIL {name}: still open after {idle + 10} s")
            ok = False
        s.close()
    return ok


def exchange(port, data, wait_close=3.0, send_after=None):
    """Sends `data` (then `send_after` once 100 Continue came), reads until the server closes or
    `wait_close` s pass; returns (bytes, closed_by_server, got_100)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(data)
    got_100 = False
    buf = b""
    if send_after is not None:
        s.settimeout(3)
        try:
            while b"\r\n\r\n" not in buf:
                chunk = s.recv(4096)
                if not chunk:
                    break
                buf += chunk
        except socket.timeout:
            pass
        got_100 = buf.startswith(b"HTTP/1.1 100")
        buf = buf.split(b"\r\n\r\n", 1)[1] if got_100 else buf
        s.sendall(send_after)
    s.settimeout(wait_close)
    closed = False
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                closed = True
                break
            buf += chunk
    except socket.timeout:
        pass
    except ConnectionResetError:
        closed = True
    s.close()
    return buf, closed, got_100


def http_checks(port):
    import json
    ok = True

    def check(good, what):
        nonlocal ok
        print(("ok   " if good else "FAIL ") + what)
        ok &= bool(good)

    def head_of(resp):
        h, _, body = resp.partition(b"\r\n\r\n")
        lines = h.decode("latin-1").split("\r\n")
        return lines[0], {l.split(":", 1)[0].strip().lower(): l.split(":", 1)[1].strip() for l in lines[1:] if ":" in l}, body

    # HTTP/1.0 without keep-alive: a 1.0 answer with its length, then the server closes
    r, closed, _ = exchange(port, b"GET /health HTTP/1.0\r\n\r\n")
    status, h, body = head_of(r)
    check(status.startswith("HTTP/1.0 200") and "transfer-encoding" not in h and h.get("content-length") == str(len(body)) and closed,
          f"HTTP/1.0 GET: {status}, content-length {h.get('content-length')}, closed {closed}")
    # HTTP/1.0 stream: no chunking, the body ends when the server closes
    req = json.dumps({"prompt": "the ", "max_tokens": 20, "stream": True}).encode()
    r, closed, _ = exchange(port, b"POST /v1/completions HTTP/1.0\r\nContent-Length: %d\r\n\r\n" % len(req) + req, wait_close=10)
    status, h, body = head_of(r)
    check(status.startswith("HTTP/1.0 200") and "transfer-encoding" not in h and body.rstrip().endswith(b"data: [DONE]") and closed,
          f"HTTP/1.0 stream: {status}, not chunked, ends with [DONE], closed {closed}")
    # HTTP/1.0 keep-alive: two answers on one connection
    r, closed, _ = exchange(port, b"GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /health HTTP/1.0\r\n\r\n")
    check(r.count(b"HTTP/1.0 200") == 2 and b"eep-alive" in r and closed, f"HTTP/1.0 keep-alive: {r.count(b'HTTP/1.0 200')} answers")
    # Expect: 100-continue is answered before the body is sent
    req = json.dumps({"prompt": "the ", "max_tokens": 3}).encode()
    r, _, got_100 = exchange(port, b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nExpect: 100-continue\r\n"
                             b"Content-Length: %d\r\n\r\n" % len(req), send_after=req)
    status, h, body = head_of(r)
    check(got_100 and status.startswith("HTTP/1.1 200"), f"Expect: 100-continue answered ({got_100}), then {status}")
    # a malformed chunk size: 400 with an error object, and the connection closed
    r, closed, _ = exchange(port, b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n")
    status, h, body = head_of(r)
    check(status.startswith("HTTP/1.1 400") and b'"error"' in body and closed, f"malformed chunk size: {status}, closed {closed}")
    # HEAD, 405 with Allow, favicon
    r, _, _ = exchange(port, b"HEAD /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    status, h, body = head_of(r)
    check(status.startswith("HTTP/1.1 200") and body == b"" and int(h.get("content-length", "0")) > 0, f"HEAD /health: {status}, no body")
    r, _, _ = exchange(port, b"DELETE /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    status, h, body = head_of(r)
    check(status.startswith("HTTP/1.1 405") and h.get("allow") == "POST", f"DELETE /v1/completions: {status}, Allow {h.get('allow')}")
    r, _, _ = exchange(port, b"GET /favicon.ico HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    first = r.split(b"\r\n")[0].decode()
    check(r.startswith(b"HTTP/1.1 204"), f"GET /favicon.ico: {first}")
    # 511 levels of nesting in an ignored field, 8 at once: each refused at once, /health unaffected
    deep = b'{"prompt":"a","x":' + b"[" * 511 + b"]" * 511 + b"}"
    t0 = time.time()
    socks = []
    for _ in range(8):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(deep) + deep)
        socks.append(s)
    answers = []
    for s in socks:
        buf = b""
        while True:
            c = s.recv(65536)
            if not c:
                break
            buf += c
        answers.append(buf)
        s.close()
    took = time.time() - t0
    check(all(a.startswith(b"HTTP/1.1 400") and b"nesting_too_deep" in a for a in answers),
          f"8 bodies nested 511 deep: all 400 nesting_too_deep ({took * 1000:.0f} ms in all)")
    lone = b'{"prompt":"\\ud800"}'
    r, _, _ = exchange(port, b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(lone) + lone)
    check(r.startswith(b"HTTP/1.1 400") and b"lone surrogate" in r and b"typeMismatch" not in r, "lone surrogate: " + r.split(b"\r\n\r\n", 1)[-1].decode())
    return ok


def fdlimit(port, pid, n):
    """n connections stuck in their headers on a server whose descriptor limit is below n: /health
    must still answer, and the server must not spin (CPU over 2 s well below a core)."""
    import os
    held = []
    for _ in range(n):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
            held.append(s)
        except OSError:
            break
    time.sleep(0.5)
    ok = True
    t0 = time.time()
    try:
        import http.client
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        c.request("GET", "/health")
        status = c.getresponse().status
        c.close()
    except Exception as e:
        status = repr(e)
    took = time.time() - t0
    good = status == 200 and took < 3
    print(("ok   " if good else "FAIL ") + f"/health with {len(held)} connections stuck in their headers: {status} in {took * 1000:.0f} ms")
    ok &= good
    def cpu():
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return int(f[11]) + int(f[12])
    c0 = cpu()
    time.sleep(2)
    share = (cpu() - c0) / os.sysconf("SC_CLK_TCK") / 2
    good = share < 0.3
    print(("ok   " if good else "FAIL ") + f"server CPU while they are held: {share * 100:.0f}% of a core")
    ok &= good
    closed = 0
    for s in held:
        s.setblocking(False)
        try:
            closed += s.recv(1) == b""
        except (BlockingIOError, ConnectionResetError):
            pass
        s.close()
    print(f"     {closed} of the held connections were closed by the server to make room")
    return ok


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "logprobs":
        sys.exit(0 if logprobs_check(int(sys.argv[2]), sys.argv[3], float(sys.argv[4])) else 1)
    if mode == "openai":
        sys.exit(0 if openai_check(int(sys.argv[2]), sys.argv[3], sys.argv[4]) else 1)
    if mode == "penalties":
        sys.exit(0 if penalties_check(int(sys.argv[2]), sys.argv[3], sys.argv[4]) else 1)
    if mode == "rss":
        sys.exit(0 if rss(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])) else 1)
    if mode == "timeouts":
        sys.exit(0 if timeouts(int(sys.argv[2]), float(sys.argv[3])) else 1)
    if mode == "disconnect":
        sys.exit(0 if disconnect(int(sys.argv[2])) else 1)
    if mode == "fdlimit":
        sys.exit(0 if fdlimit(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])) else 1)
    if mode == "http":
        sys.exit(0 if http_checks(int(sys.argv[2])) else 1)
    if mode == "connections":
        sys.exit(0 if connections(int(sys.argv[2]), int(sys.argv[3])) else 1)
    sys.exit(2)
