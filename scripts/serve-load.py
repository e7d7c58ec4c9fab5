#!/usr/bin/env python3
"""Bounded load test of `charrnn serve` on loopback: C concurrent clients, each streaming R
completions of L tokens; prints aggregate chars/s, time to first token and per-token latency
(p50/p99), the CPU time the server and this client spent per 1000 generated characters (user+sys,
from /proc/PID/stat and getrusage), and the server's peak RSS (VmHWM of --pid). Loopback only;
stops after R requests per client or --max-seconds, whichever comes first.

The client is one process, one thread: non-blocking sockets under `selectors`, a minimal HTTP/1.1
reader (status line, chunked body) and one json.loads per event, so that on a small machine it
takes little of the CPU it measures. Its CPU share is printed: if it is large, the figures are the
client's, not the server's. CPU seconds per 1000 chars do not depend on what else runs on the
machine the way chars/s do; take chars/s only on a quiet machine.

    scripts/serve-load.py --port 8080 --pid $(pgrep -n charrnn) --clients 1 8 32 64 --tokens 500 --requests 4
    scripts/serve-load.py ... --extra '{"logprobs": 5, "frequency_penalty": 0.5, "presence_penalty": 0.3}'
        (the same load with more request fields: penalties, logprobs)
    scripts/serve-load.py ... --sequential-sample 32 --charrnn .build/release/charrnn --checkpoint RUN
        (after the served figures: the same work as 32 one-shot `charrnn sample` processes of
        --tokens chars each, one after another, for comparison; --clients none runs only that)
"""
import argparse, json, os, resource, selectors, socket, subprocess, sys, time

TICK = os.sysconf("SC_CLK_TCK")


def pct(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def proc_cpu(pid):
    """User + system CPU seconds of process `pid` (all threads), or nan."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK   # utime, stime (fields 14, 15)
    except (OSError, IndexError, ValueError):
        return float("nan")


def self_cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def peak_rss_mb(pid):
    try:
        for l in open(f"/proc/{pid}/status"):
            if l.startswith("VmHWM:"):
                return int(l.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


class Stream:
    """One streaming completion on its own connection: request, headers, chunked SSE body."""

    def __init__(self, port, tokens, seed, extra=None):
        body = json.dumps({"prompt": "", "max_tokens": tokens, "temperature": 0.8, "seed": seed, "stream": True,
                           **(extra or {})}).encode()
        self.out = (b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n" % len(body)) + body
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        self.sock.connect_ex(("127.0.0.1", port))
        self.buf = b""
        self.head = True
        self.status = 0
        self.chars = 0
        self.t0 = time.perf_counter()
        self.first = None
        self.last = None
        self.gaps = []
        self.events_with_text = 0

    def writable(self):
        n = self.sock.send(self.out)
        self.out = self.out[n:]
        return not self.out

    def readable(self):
        """Reads what is there; True when the response is complete (or the connection ended)."""
        data = self.sock.recv(1 << 16)
        if not data:
            return True
        self.buf += data
        if self.head:
            i = self.buf.find(b"\r\n\r\n")
            if i < 0:
                return False
            self.status = int(self.buf[9:12])
            if self.status != 200:
                return True
            self.buf = self.buf[i + 4:]
            self.head = False
        # chunked transfer coding: size line, data, CRLF; each chunk holds whole events
        while True:
            j = self.buf.find(b"\r\n")
            if j < 0:
                return False
            size = int(self.buf[:j].split(b";")[0], 16)
            if size == 0:
                return True
            if len(self.buf) < j + 2 + size + 2:
                return False
            self.events(self.buf[j + 2:j + 2 + size])
            self.buf = self.buf[j + 2 + size + 2:]

    def events(self, chunk):
        now = None
        for e in chunk.split(b"\n\n"):
            if not e.startswith(b"data: {"):
                continue
            for ch in json.loads(e[6:]).get("choices", ()):
                n = len(ch["text"])
                if not n:
                    continue
                now = now or time.perf_counter()
                if self.first is None:
                    self.first = now - self.t0
                elif self.last is not None:
                    self.gaps.append((now - self.last) / n)
                self.last = now
                self.chars += n
                self.events_with_text += 1


def load(args, clients):
    deadline = time.perf_counter() + args.max_seconds
    sel = selectors.DefaultSelector()
    left = {k: args.requests for k in range(clients)}
    results = []

    def start(k):
        left[k] -= 1
        s = Stream(args.port, args.tokens, 1000 * k + left[k], args.extra)
        sel.register(s.sock, selectors.EVENT_WRITE, (k, s))

    cpu0, server0, t0 = self_cpu(), proc_cpu(args.pid), time.perf_counter()
    for k in range(clients):
        start(k)
    while sel.get_map():
        if time.perf_counter() > deadline:
            break
        for key, ev in sel.select(timeout=1):
            k, s = key.data
            try:
                if ev & selectors.EVENT_WRITE:
                    if s.writable():
                        sel.modify(s.sock, selectors.EVENT_READ, key.data)
                    continue
                finished = s.readable()
            except OSError:
                finished = True
            if finished:
                sel.unregister(s.sock)
                s.sock.close()
                if s.status == 200:
                    results.append(s)
                if left[k] > 0 and time.perf_counter() < deadline:
                    start(k)
    for key in list(sel.get_map().values()):
        key.data[1].sock.close()
    wall = time.perf_counter() - t0
    cpu, server = self_cpu() - cpu0, proc_cpu(args.pid) - server0
    chars = sum(r.chars for r in results)
    ttft = [r.first for r in results if r.first is not None]
    gaps = [g for r in results for g in r.gaps]
    per_k = 1000 / max(1, chars)
    events = sum(r.events_with_text for r in results)
    print(f"{clients:3d} streams: {len(results)} completions, {chars / wall:8.0f} chars/s, "
          f"TTFT p50 {pct(ttft, 50) * 1000:6.1f} ms p99 {pct(ttft, 99) * 1000:6.1f} ms, "
          f"per token p50 {pct(gaps, 50) * 1000:5.2f} ms p99 {pct(gaps, 99) * 1000:5.2f} ms, {chars / max(1, events):.1f} chars/event, "
          f"CPU s/1000 chars: server {server * per_k:.4f} client {cpu * per_k:.4f} "
          f"(client {100 * cpu / wall:.0f}% of a core, server {100 * server / wall:.0f}%), "
          f"server peak RSS {peak_rss_mb(args.pid):.0f} MB", flush=True)


def sequential(args):
    t0 = time.perf_counter()
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    chars = 0
    for i in range(args.sequential_sample):
        out = subprocess.run([args.charrnn, "sample", "--checkpoint", args.checkpoint, "--length", str(args.tokens),
                              "--seed", str(i), "--temp", "0.8"], capture_output=True, timeout=600, check=True).stdout
        chars += len(out.decode())   # the sample as generated (no prime, no added newline)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime
    print(f"{args.sequential_sample} sequential `charrnn sample` processes: {chars} chars in {wall:.1f} s, "
          f"{chars / wall:.0f} chars/s, CPU s/1000 chars {cpu * 1000 / max(1, chars):.4f}", flush=True)


if __name__ == "__main__":
    a = argparse.ArgumentParser()
    a.add_argument("--port", type=int, default=8080)
    a.add_argument("--pid", type=int, default=0, help="server pid, for its CPU time and peak RSS")
    a.add_argument("--clients", nargs="+", default=["1", "8", "32", "64"], help="concurrency levels, or 'none'")
    a.add_argument("--tokens", type=int, default=500)
    a.add_argument("--extra", type=json.loads, default={}, metavar="JSON",
                   help='more request fields, e.g. \'{"logprobs": 5, "frequency_penalty": 0.5}\'')
    a.add_argument("--requests", type=int, default=4, help="completions per client")
    a.add_argument("--max-seconds", type=float, default=300)
    a.add_argument("--sequential-sample", type=int, default=0, help="also run N one-shot `charrnn sample` processes")
    a.add_argument("--charrnn", default=".build/release/charrnn")
    a.add_argument("--checkpoint", default="")
    args = a.parse_args()
    for c in args.clients:
        if c != "none":
            load(args, max(1, min(int(c), 256)))
    if args.sequential_sample:
        sequential(args)
