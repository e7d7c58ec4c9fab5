#!/usr/bin/env python3
"""`charrnn export` checked end to end: ONNX with onnx + onnxruntime, HTML in headless Chromium.

For LSTM/GRU/RNN x one-hot/embedding x full/adaptive softmax (tiny models trained for a few
iterations with the charrnn binary in a temporary folder), plus one vocabulary with an unknown token:
  ONNX  onnx.checker.check_model(full_check) passes; metadata_props["charrnn"] holds the vocabulary;
        onnxruntime's per-token log-probabilities of a held-out text, fed in chunks of different
        lengths with the state carried from call to call, sum (over what eval scores: an unknown target is fed, not scored) to `charrnn eval --batch 1` within 1e-5
        relative and equal an independent numpy reference (reference.py) within 1e-4 per token; two
        streams in one batch equal the streams alone; greedy generation of 500 characters (and 200
        after a prime) is identical to `charrnn sample --temp 0`.
  HTML  the page, opened from disk, scores the same text within 1e-4 per token of the reference and its
        sum within 1e-5 relative of `charrnn eval`; greedy 300 characters equal `charrnn sample --temp 0`;
        a seed gives `charrnn sample --seed`'s text; no element loads anything; the bf16 page stays
        within 0.05 nats per token. On one page the UI is driven: type a prompt, set a seed,
        Generate, the text streams and grows, Stop stops it; a screenshot is saved.
Bad input: an existing output without --force, an unwritable folder, a directory, a corrupt checkpoint
each give one line and a non-zero exit and leave no file.

  check_exports.py --charrnn BIN [--out DIR] [--keep DIR]   the checks; exit 1 on any failure
  check_exports.py --charrnn BIN --figures [--out DIR]      the figures (run alone on a quiet machine)
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference import Reference  # noqa: E402

failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    if not ok:
        failures.append(what)
    return ok


def run(cmd, cwd, ok_codes=(0,)):
    r = subprocess.run(cmd, cwd=cwd, capture_output=True)
    if r.returncode not in ok_codes:
        sys.exit(f"FAIL: {' '.join(cmd)} exited {r.returncode}:\n{r.stderr.decode(errors='replace')}")
    return r


CORPUS_LINES = ["To be, or not to be, that is the question:", "Whether 'tis nobler in the mind to suffer",
                "The slings and arrows of outrageous fortune,", "Or to take arms against a sea of troubles",
                "床前明月光，疑是地上霜。", "And by opposing end them? To die: to sleep; No more;",
                "Cafe\u0301 au lait, 👩‍💻 and 🇫🇷 to be.\r\nThe end."]
HELD_OUT = "Whether to be or not, the café question (cafe\u0301) is nobler than fortune. 🦊 Zebra! 👩‍💻 明月光\n" * 5


def write_corpus(work):
    with open(os.path.join(work, "corpus.txt"), "w", encoding="utf-8") as f:
        f.write("".join(CORPUS_LINES[(i * 5) % len(CORPUS_LINES)] + "\n" for i in range(300)))
    with open(os.path.join(work, "held-out.txt"), "w", encoding="utf-8") as f:
        f.write(HELD_OUT)


# ---- ONNX helpers

class OnnxModel:
    def __init__(self, path, threads=0):
        import onnx
        import onnxruntime as ort
        self.proto = onnx.load(path)
        self.meta = json.loads({p.key: p.value for p in self.proto.metadata_props}["charrnn"])
        so = ort.SessionOptions()
        if threads:
            so.intra_op_num_threads = threads
            so.inter_op_num_threads = 1
        self.session = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        m = self.meta
        self.lstm = m["cell"] == "lstm"
        self.L, self.H, self.V = m["layers"], m["hidden"], m["vocab_size"]

    def state(self, batch):
        s = {"h": np.zeros((self.L, batch, self.H), np.float32)}
        if self.lstm:
            s["c"] = np.zeros((self.L, batch, self.H), np.float32)
        return s

    def run(self, tokens, state):
        """tokens [B, T] int64; returns log_probs [B, T, V] and the new state."""
        out = self.session.run(None, {"tokens": np.asarray(tokens, np.int64), **state})
        new = {"h": out[1]}
        if self.lstm:
            new["c"] = out[2]
        return out[0], new

    def encode(self, text):
        """Tokenizes as charrnn does for unit "scalar" (the only unit these checks train)."""
        m = self.meta
        assert m["unit"] == "scalar" and m["normalize"] == "none"
        index = {t: i for i, t in enumerate(m["vocab"])}
        ids = []
        for ch in text.lstrip("\ufeff"):
            if ch in index:
                ids.append(index[ch])
            elif m["unknown_id"] is not None:
                ids.append(m["unknown_id"])
        return ids

    def argmax(self, lp):
        lp = lp.astype(np.float64).copy()
        if self.meta["unknown_id"] is not None:
            lp[self.meta["unknown_id"]] = -np.inf
        return int(np.argmax(lp))     # first maximum: the lowest id, as charrnn

    def greedy(self, n, prime=""):
        st = self.state(1)
        if prime:
            lp, st = self.run([self.encode(prime)], st)
            lp = lp[0, -1]
        elif self.meta["start_id"] is not None:
            lp, st = self.run([[self.meta["start_id"]]], st)
            lp = lp[0, -1]
        else:
            lp = np.zeros(self.V)
        out = []
        for _ in range(n):
            t = self.argmax(lp)
            out.append(self.meta["vocab"][t])
            lp, st = self.run([[t]], st)
            lp = lp[0, -1]
        return prime + "".join(out)


def sample_cli(binary, ckpt, work, length, temp="0", prime=None, seed=None, threads="1"):
    cmd = [binary, "sample", "--checkpoint", ckpt, "--temp", temp, "--length", str(length), "--threads", threads]
    if prime:
        cmd += ["--prime", prime]
    if seed is not None:
        cmd += ["--seed", str(seed)]
    return run(cmd, work).stdout.decode("utf-8")


def scored_total(got, ids, unk):
    """−Σ log p over the predictions charrnn eval scores: targets ids[1:], the unknown token fed but not
    scored. Returns (total, count)."""
    targets = np.asarray(ids[1:1 + len(got)])
    mask = np.ones(len(got), bool) if unk is None else targets != unk
    return float(-got[mask].sum()), int(mask.sum())


def eval_cli(binary, ckpt, work):
    out = run([binary, "eval", "--checkpoint", ckpt, "--batch", "1", "--seq", "50", "--json", "--threads", "1", "held-out.txt"], work)
    return json.loads(out.stdout.decode().strip().splitlines()[0])


def check_onnx(binary, work, name, ckpt, ref, ev, ids, scalar=True):
    import onnx
    path = os.path.join(work, name + ".onnx")
    run([binary, "export", ckpt, "--format", "onnx", "-o", path], work)
    proto = onnx.load(path)
    try:
        onnx.checker.check_model(proto, full_check=True)
        checked = True
    except Exception as e:  # noqa: BLE001
        print("     ", e)
        checked = False
    check(checked, f"{name}: onnx.checker accepts the model (opset {proto.opset_import[0].version}, IR {proto.ir_version})")
    ops = {n.op_type for n in proto.graph.node}
    cell = ref.cell.upper()
    check(cell in ops and "OneHot" not in ops, f"{name}: uses ONNX's {cell} operator, no OneHot ({sorted(ops)})")
    m = OnnxModel(path, threads=1)
    check(m.meta["vocab"] == ref.vocab and m.meta["unknown_id"] == ref.unk, f"{name}: metadata vocabulary and unknown id match the checkpoint")
    if scalar:   # this script tokenizes unit "scalar" itself; grapheme models use the page's ids
        check(m.encode(HELD_OUT) == ids, f"{name}: tokenizing with the metadata gives charrnn's ids")
    # the held-out text in chunks of 1, 7, 50 and the rest, the state carried from call to call
    st, got, i = m.state(1), [], 0
    for size in (1, 7, 50, len(ids)):
        j = min(len(ids) - 1, i + size)
        if j <= i:
            break
        lp, st = m.run([ids[i:j]], st)
        got += [lp[0, t, ids[i + t + 1]] for t in range(j - i)]
        i = j
    got = np.asarray(got, np.float64)
    want = ref.token_log_probs(ids)
    total, n = scored_total(got, ids, ref.unk)
    eval_total = ev["loss"] * ev["scored"]
    rel = abs(total - eval_total) / eval_total
    check(n == ev["scored"] and rel <= 1e-5,
          f"{name}: onnxruntime summed loss {total:.6f} vs charrnn eval {eval_total:.6f} (relative {rel:.1e} ≤ 1e-5, {n} scored predictions)")
    worst = float(np.abs(got - want).max())
    check(worst <= 1e-4, f"{name}: per-token log p within 1e-4 of the numpy reference (max |diff| {worst:.1e})")
    # two streams in one batch: each equals itself alone
    a, b = ids[:40], ids[40:80]
    both, _ = m.run([a, b], m.state(2))
    alone_a, _ = m.run([a], m.state(1))
    alone_b, _ = m.run([b], m.state(1))
    d = max(float(np.abs(both[0] - alone_a[0]).max()), float(np.abs(both[1] - alone_b[0]).max()))
    check(d <= 1e-5, f"{name}: batch of 2 streams equals each stream alone (max |diff| {d:.1e})")
    g = m.greedy(500)
    want_g = sample_cli(binary, ckpt, work, 500)
    check(g == want_g, f"{name}: greedy 500 characters equal charrnn sample --temp 0" + ("" if g == want_g else f"\n       onnx:    {g[:120]!r}\n       charrnn: {want_g[:120]!r}"))
    if scalar:
        g = m.greedy(200, prime="To be")
        want_g = sample_cli(binary, ckpt, work, 200, prime="To be")
        check(g == want_g, f"{name}: greedy 200 characters after a prime equal charrnn sample --temp 0 --prime")
    return path


# ---- HTML

def check_html(browser, binary, work, name, ckpt, ref, ev, ids, ui_shot=None):
    path = os.path.join(work, name + ".html")
    run([binary, "export", ckpt, "--format", "html", "-o", path], work)
    load = browser.open(path)
    if not check(load is not None, f"{name}: page opens from disk and its model is ready"):
        return ids
    external = browser.js("[...document.querySelectorAll('[src],[href],link')].map(e => e.src || e.href).filter(Boolean)")
    check(external == [], f"{name}: page loads no external resource ({external})")
    s = browser.js(f"charrnn.score({json.dumps(HELD_OUT)})")
    if ids is None:   # grapheme / NFC: the page tokenizes; its count must be charrnn eval's
        ids = s["ids"]
        check(len(ids) == ev["tokens"], f"{name}: page tokenizes the text into charrnn eval's {ev['tokens']} tokens ({len(ids)})")
    check(s["ids"] == ids, f"{name}: page tokenizes the text as charrnn")
    got = np.asarray(s["logProbs"], np.float64)
    want = ref.token_log_probs(ids)
    worst = float(np.abs(got - want).max()) if len(got) == len(want) else float("inf")
    check(worst <= 1e-4, f"{name}: page per-token log p within 1e-4 of the reference (max |diff| {worst:.1e})")
    total, n = scored_total(got, ids, ref.unk)
    eval_total = ev["loss"] * ev["scored"]
    rel = abs(total - eval_total) / eval_total
    check(n == ev["scored"] and rel <= 1e-5, f"{name}: page summed loss {total:.6f} vs charrnn eval {eval_total:.6f} (relative {rel:.1e}, {n} scored predictions)")
    g = browser.js("charrnn.complete({prime: '', length: 300, temperature: 0})")
    want_g = sample_cli(binary, ckpt, work, 300)
    check(g == want_g, f"{name}: page greedy 300 characters equal charrnn sample --temp 0"
          + ("" if g == want_g else f"\n       page:    {g[:120]!r}\n       charrnn: {want_g[:120]!r}"))
    g = browser.js("charrnn.complete({prime: 'To be', length: 200, temperature: 0.9, topK: 0, topP: 1, seed: '7'})")
    want_g = sample_cli(binary, ckpt, work, 200, temp="0.9", prime="To be", seed=7)
    check(g == want_g, f"{name}: page seed 7 at temperature 0.9 gives charrnn sample --seed 7's text")
    g2 = browser.js("charrnn.complete({prime: 'To be', length: 100, temperature: 1, topK: 5, topP: 0.9, seed: '11'})")
    check(isinstance(g2, str) and g2.startswith("To be") and len(g2) == 105, f"{name}: top-k 5, top-p 0.9 generation runs")
    if ui_shot:
        drive_ui(browser, name, ui_shot)
    return ids


def drive_ui(browser, name, shot):
    browser.js("document.getElementById('prompt').focus()")
    browser.type("To be")
    browser.js("document.getElementById('seed').value = '42'; document.getElementById('length').value = '100000'")
    browser.click("#start")
    check(browser.wait_for("document.getElementById('output').textContent.length > 30", 20), f"{name}: streamed text appears")
    n1 = browser.js("document.getElementById('output').textContent.length")
    time.sleep(0.4)
    n2 = browser.js("document.getElementById('output').textContent.length")
    check(n2 > n1, f"{name}: streamed text grows ({n1} → {n2} characters)")
    check(browser.js("document.getElementById('stop').disabled") is False, f"{name}: Stop is enabled while generating")
    browser.click("#stop")
    check(browser.wait_for("document.getElementById('status').textContent.startsWith('stopped')", 10), f"{name}: Stop stops the generation")
    n3 = browser.js("document.getElementById('output').textContent.length")
    time.sleep(0.3)
    n4 = browser.js("document.getElementById('output').textContent.length")
    check(n3 == n4 and n4 < 100005, f"{name}: no more text after Stop ({n3} → {n4})")
    check(browser.js("document.getElementById('output').textContent.startsWith('To be')"), f"{name}: output starts with the prompt")
    browser.screenshot(shot)
    check(os.path.getsize(shot) > 5000, f"{name}: screenshot saved ({shot})")


def check_bf16(browser, binary, work, name, ckpt, ref, ids):
    path = os.path.join(work, name + "-bf16.html")
    run([binary, "export", ckpt, "--format", "html", "--weights", "bf16", "-o", path], work)
    weights = "document.getElementById('charrnn-weights').textContent.trim().length"
    browser.open(os.path.join(work, name + ".html"))
    fp32 = browser.js(weights)
    if browser.open(path) is None:
        check(False, f"{name}: bf16 page opens")
        return
    bf16 = browser.js(weights)
    check(abs(bf16 / fp32 - 0.5) < 0.01, f"{name}: bf16 embeds the weights in {bf16} base64 characters, fp32 in {fp32} "
                                         f"(pages {os.path.getsize(path)} and {os.path.getsize(os.path.join(work, name + '.html'))} bytes)")
    s = browser.js(f"charrnn.score({json.dumps(HELD_OUT)})")
    got, want = np.asarray(s["logProbs"]), ref.token_log_probs(ids)
    d = np.abs(got - want)
    check(float(d.max()) < 0.05, f"{name}: bf16 weights move log p by max {d.max():.1e}, mean {d.mean():.1e} nats per token "
                                 f"(summed loss {-got.sum():.4f} vs {-want.sum():.4f})")


# ---- bad input

def check_bad_input(binary, work, ckpt):
    def one_line_error(r, what):
        err = r.stderr.decode().strip().splitlines()
        return check(r.returncode != 0 and len(err) == 1 and err[0].startswith("error:"), f"bad input: {what} ({err[-1] if err else 'no message'})")

    target = os.path.join(work, "exists.onnx")
    with open(target, "w") as f:
        f.write("keep me")
    one_line_error(run([binary, "export", ckpt, "--format", "onnx", "-o", target], work, ok_codes=(0, 1)), "existing output without --force")
    check(open(target).read() == "keep me", "bad input: the existing file is untouched")
    run([binary, "export", ckpt, "--format", "onnx", "-o", target, "--force"], work)
    check(os.path.getsize(target) > 100, "bad input: --force replaces it")
    one_line_error(run([binary, "export", ckpt, "--format", "html", "-o", os.path.join(work, "no", "such", "dir.html")], work, ok_codes=(0, 1)),
                   "a folder that does not exist")
    one_line_error(run([binary, "export", ckpt, "--format", "html", "-o", work], work, ok_codes=(0, 1)), "a directory as output")
    bad = os.path.join(work, "corrupt.safetensors")
    data = bytearray(open(os.path.join(work, ckpt, "best.safetensors") if os.path.isdir(os.path.join(work, ckpt)) else ckpt, "rb").read())
    data[-5:] = b"\xff\xff\xff\x7f\xff"          # a NaN-ish tail: fails validation or the finite check
    open(bad, "wb").write(bytes(data[:-3]))     # and a truncated buffer
    one_line_error(run([binary, "export", bad, "--format", "onnx", "-o", os.path.join(work, "corrupt.onnx")], work, ok_codes=(0, 1)),
                   "a checkpoint that fails validation")
    check(not os.path.exists(os.path.join(work, "corrupt.onnx")), "bad input: no file is left for a refused checkpoint")
    leftovers = [f for f in os.listdir(work) if ".tmp-" in f]
    check(leftovers == [], f"bad input: no temporary files left ({leftovers})")


CONFIGS = [
    # name, train flags
    ("lstm", ["--model", "lstm"]),
    ("lstm-embed", ["--model", "lstm", "--embed", "12"]),
    ("lstm-adaptive", ["--model", "lstm", "--softmax", "adaptive", "--cutoffs", "12,30"]),
    ("lstm-embed-adaptive", ["--model", "lstm", "--embed", "10", "--softmax", "adaptive"]),
    ("gru", ["--model", "gru"]),
    ("gru-embed", ["--model", "gru", "--embed", "12", "--layers", "1"]),
    ("gru-adaptive", ["--model", "gru", "--softmax", "adaptive", "--cutoffs", "12,30"]),
    ("gru-embed-adaptive", ["--model", "gru", "--embed", "8", "--softmax", "adaptive", "--cutoffs", "20"]),
    ("rnn", ["--model", "rnn"]),
    ("rnn-embed", ["--model", "rnn", "--embed", "12"]),
    ("rnn-adaptive", ["--model", "rnn", "--softmax", "adaptive", "--cutoffs", "12,30"]),
    ("rnn-embed-adaptive", ["--model", "rnn", "--embed", "12", "--softmax", "adaptive", "--cutoffs", "16"]),
    ("lstm-unknown", ["--model", "lstm", "--max-vocab", "30"]),
    ("gru-grapheme-nfc", ["--model", "gru", "--embed", "8", "--unit", "grapheme", "--normalize", "nfc"]),
]


def checks(binary, work, out):
    from chromium import Chromium
    write_corpus(work)
    browser = Chromium()
    try:
        for i, (name, flags) in enumerate(CONFIGS):
            run([binary, "train", "corpus.txt", "--hidden", "24", "--seq", "20", "--batch", "8", "--max-iters", "30",
                 "--eval-every", "30", "--lr", "0.02", "--threads", "1", "--overwrite", "--name", name] + flags, work)
            ckpt = f"checkpoints/{name}"
            ref = Reference(os.path.join(work, ckpt, "best.safetensors"))
            ev = eval_cli(binary, ckpt, work)
            scalar = "--unit" not in flags
            ids = OnnxEncode(ref).encode(HELD_OUT) if scalar else None
            ids = check_html(browser, binary, work, name, ckpt, ref, ev, ids,
                             ui_shot=os.path.join(out, "export-page.png") if i == 0 else None)
            if ids is None:
                continue
            check_onnx(binary, work, name, ckpt, ref, ev, ids, scalar=scalar)
            if name in ("lstm", "gru-adaptive"):
                check_bf16(browser, binary, work, name, ckpt, ref, ids)
    finally:
        browser.close()
    check_bad_input(binary, work, "checkpoints/lstm")


class OnnxEncode:
    """charrnn's tokenization for unit "scalar", from the checkpoint's vocabulary (independent of the export)."""
    def __init__(self, ref):
        self.index = {t: i for i, t in enumerate(ref.vocab)}
        self.unk = ref.unk

    def encode(self, text):
        ids = []
        for ch in text:
            if ch in self.index:
                ids.append(self.index[ch])
            elif self.unk is not None:
                ids.append(self.unk)
        return ids


# ---- figures (the lead runs these alone on a quiet machine)

def figures(binary, work, out, smoke=False):
    from chromium import Chromium
    import random
    random.seed(3)
    words = ("the of and to in that is was he for it with as his on be at by had not are but from or have an they which "
             "one you were her all she there would their we him been has when who will more no if out so said what up its "
             "about into than them can only other new some could time these two may then do first any my now such like our "
             "over man me even most made after also did many before must through back years where much your way well down "
             "should because each just those people Mr how too little state good very make world still own see men work long "
             "get here between both life being under never day same another know while last might us great old year off come "
             "since against go came right used take three ROMEO JULIET KING? Yes! No; Well: 'tis (aye) -- 1 2 3 4 5 6 7 8 9 0 X Q Z J").split()
    with open(os.path.join(work, "corpus.txt"), "w") as f:
        for _ in range(4000):
            f.write(" ".join(random.choice(words) for _ in range(random.randint(6, 14))) + "\n")
    rows = []
    browser = Chromium()
    try:
        for hidden in (128, 512):
            name = f"lstm-2x{hidden}"
            run([binary, "train", "corpus.txt", "--hidden", str(hidden), "--layers", "2", "--max-iters", "2", "--eval-every", "2",
                 "--name", name], work)
            ckpt = f"checkpoints/{name}"
            onnx_path, html, html16 = (os.path.join(work, name + s) for s in (".onnx", ".html", "-bf16.html"))
            run([binary, "export", ckpt, "--format", "onnx", "-o", onnx_path], work)
            run([binary, "export", ckpt, "--format", "html", "-o", html], work)
            run([binary, "export", ckpt, "--format", "html", "--weights", "bf16", "-o", html16], work)
            ck = os.path.join(work, ckpt, "best.safetensors")
            r = {"model": f"LSTM 2x{hidden}", "checkpoint bytes": os.path.getsize(ck), "onnx bytes": os.path.getsize(onnx_path),
                 "html fp32 bytes": os.path.getsize(html), "html bf16 bytes": os.path.getsize(html16)}
            n = 40 if smoke else (4000 if hidden == 128 else 1500)
            reps = 1 if smoke else 3
            for threads in ("1", "0"):
                def timed(length):
                    t0 = time.perf_counter()
                    sample_cli(binary, ckpt, work, length, temp="0.8", seed=1, threads=threads)
                    return time.perf_counter() - t0
                base = min(timed(0) for _ in range(reps))
                full = min(timed(n) for _ in range(reps))
                label = "all" if threads == "0" else threads
                r[f"charrnn sample chars/s (threads {label})"] = round(n / (full - base)) if full > base else "n/a (too short to time)"
                m = OnnxModel(onnx_path, threads=int(threads))
                rng = np.random.default_rng(1)
                best = float("inf")
                for _ in range(reps):
                    st = m.state(1)
                    lp, st = m.run([[m.meta["start_id"] or 0]], st)
                    t0 = time.perf_counter()
                    for _ in range(n):
                        p = np.exp(lp[0, -1].astype(np.float64) / 0.8)
                        t = int(rng.choice(m.V, p=p / p.sum()))
                        lp, st = m.run([[t]], st)
                    best = min(best, time.perf_counter() - t0)
                r[f"onnxruntime chars/s (threads {label})"] = round(n / best)
            for label, path in (("fp32", html), ("bf16", html16)):
                loads = [browser.open(path) for _ in range(reps)]
                r[f"page load s ({label}, navigate to ready)"] = round(min(loads), 3)
                r[f"page script load ms ({label})"] = round(browser.js("charrnn.loadMs"))
                browser.js("charrnn.complete({length: 200, temperature: 0.8, seed: '1'})")   # warm the JIT
                ms = min(browser.js(f"(() => {{ const t = performance.now(); charrnn.complete({{length: {n}, temperature: 0.8, seed: '1'}});"
                                    " return performance.now() - t; })()") for _ in range(reps))
                r[f"page chars/s ({label})"] = round(n / (ms / 1000))
            rows.append(r)
    finally:
        browser.close()
    print()
    for r in rows:
        print(r["model"])
        for k, v in r.items():
            if k != "model":
                print(f"  {k:45s} {v}")
    with open(os.path.join(out, "export-figures.json"), "w") as f:
        json.dump(rows, f, indent=1)
    print(f"\n(also in {os.path.join(out, 'export-figures.json')})")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--charrnn", required=True, help="path to the charrnn binary")
    ap.add_argument("--out", default=".build/export-test", help="where the screenshot and figures go")
    ap.add_argument("--keep", help="work in this folder instead of a temporary one")
    ap.add_argument("--figures", action="store_true", help="measure instead of checking (run alone: timings)")
    ap.add_argument("--smoke", action="store_true", help="with --figures: tiny counts, to check the measuring runs (numbers meaningless)")
    a = ap.parse_args()
    binary = os.path.abspath(a.charrnn)
    os.makedirs(a.out, exist_ok=True)
    work = a.keep or tempfile.mkdtemp(prefix="charrnn-export-")
    os.makedirs(work, exist_ok=True)
    try:
        if a.figures:
            figures(binary, work, os.path.abspath(a.out), smoke=a.smoke)
            return 0
        checks(binary, work, os.path.abspath(a.out))
    finally:
        if not a.keep:
            subprocess.run(["rm", "-rf", work])
    print(f"{'all export checks passed' if not failures else str(len(failures)) + ' FAILED'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
