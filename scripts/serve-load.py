#!/usr/bin/env python3
"""Bounded load test of `charrnn serve` on loopback: C concurrent clients, each streaming R
completions of L tokens; prints aggregate chars/s, time to first token and per-token latency
(p50/p99), and the server's peak RSS (VmHWM of --pid). Loopback only; stops after R requests per
client or --max-seconds, whichever comes first. Take figures only on a quiet machine.

    scripts/serve-load.py --port 8080 --pid $(pgrep -n charrnn) --clients 1 8 32 64 --tokens 500 --requests 4
    scripts/serve-load.py --sequential-sample 32 --charrnn .build/release/charrnn --checkpoint RUN --tokens 500
        (the same work as 32 one-shot `charrnn sample` processes, one after another, for comparison)
"""
import argparse, http.client, json, statistics, subprocess, sys, threading, time


def pct(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def one_stream(port, tokens, seed, deadline):
    """One streaming completion: (chars, ttft seconds, [gaps between events in seconds])."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=max(1, deadline - time.time()))
    body = json.dumps({"prompt": "", "max_tokens": tokens, "temperature": 0.8, "seed": seed, "stream": True})
    t0 = time.time()
    c.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
    r = c.getresponse()
    if r.status != 200:
        r.read()
        c.close()
        return None
    chars, first, last, gaps, buf = 0, None, None, [], b""
    while True:
        line = r.readline()
        if not line:
            break
        if not line.startswith(b"data: ") or line.startswith(b"data: [DONE]"):
            continue
        d = json.loads(line[6:])
        for ch in d.get("choices", []):
            if ch["text"]:
                now = time.time()
                if first is None:
                    first = now - t0
                elif last is not None:
                    gaps.append((now - last) / max(1, len(ch["text"])))
                last = now
                chars += len(ch["text"])
        if time.time() > deadline:
            break
    c.close()
    return chars, first, gaps


def peak_rss_mb(pid):
    try:
        for l in open(f"/proc/{pid}/status"):
            if l.startswith("VmHWM:"):
                return int(l.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def load(args, clients):
    deadline = time.time() + args.max_seconds
    results, lock = [], threading.Lock()

    def worker(k):
        for i in range(args.requests):
            if time.time() > deadline:
                return
            r = one_stream(args.port, args.tokens, 1000 * k + i, deadline)
            if r:
                with lock:
                    results.append(r)

    t0 = time.time()
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.time() - t0
    chars = sum(r[0] for r in results)
    ttft = [r[1] for r in results if r[1] is not None]
    gaps = [g for r in results for g in r[2]]
    print(f"{clients:3d} streams: {len(results)} completions, {chars / wall:9.0f} chars/s, "
          f"TTFT p50 {pct(ttft, 50) * 1000:7.1f} ms p99 {pct(ttft, 99) * 1000:7.1f} ms, "
          f"per token p50 {pct(gaps, 50) * 1000:6.2f} ms p99 {pct(gaps, 99) * 1000:6.2f} ms, "
          f"server peak RSS {peak_rss_mb(args.pid):.0f} MB", flush=True)


def sequential(args):
    t0 = time.time()
    chars = 0
    for i in range(args.sequential_sample):
        out = subprocess.run([args.charrnn, "sample", "--checkpoint", args.checkpoint, "--length", str(args.tokens),
                              "--seed", str(i), "--temp", "0.8"], capture_output=True, timeout=600, check=True).stdout
        chars += len(out.decode())
    wall = time.time() - t0
    print(f"{args.sequential_sample} sequential `charrnn sample` processes: {chars / wall:.0f} chars/s ({wall:.1f} s)")


if __name__ == "__main__":
    a = argparse.ArgumentParser()
    a.add_argument("--port", type=int, default=8080)
    a.add_argument("--pid", type=int, default=0, help="server pid, for its peak RSS")
    a.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32, 64])
    a.add_argument("--tokens", type=int, default=500)
    a.add_argument("--requests", type=int, default=4, help="completions per client")
    a.add_argument("--max-seconds", type=float, default=300)
    a.add_argument("--sequential-sample", type=int, default=0)
    a.add_argument("--charrnn", default=".build/release/charrnn")
    a.add_argument("--checkpoint", default="")
    args = a.parse_args()
    if args.sequential_sample:
        sequential(args)
        sys.exit(0)
    for c in args.clients:
        load(args, min(c, 256))
