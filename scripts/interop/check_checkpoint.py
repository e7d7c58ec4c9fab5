#!/usr/bin/env python3
"""Checks that charrnn checkpoints are readable by other tools and mean what they say.

For each cell type (LSTM, GRU, RNN; one-hot and embedding input, 2 layers) this trains a tiny model
with the charrnn binary in a temporary folder, loads the checkpoint with the `safetensors` package
(numpy API), runs an independent numpy (float64) implementation of PyTorch's nn.LSTM / nn.GRU /
nn.RNN equations plus the linear decoder, and checks that its loss on a text equals
`charrnn eval --json` to 1e-4 nats/token. The evaluation layout is the one `charrnn eval`
documents: the n known tokens give P = n - 1 predictions, cut into B streams of S = P // B (the
last stream also takes the remainder), each starting from a zero state.

Usage: check_checkpoint.py --charrnn .build/debug/charrnn [--text FILE] [--keep DIR]
       check_checkpoint.py --charrnn BIN --checkpoint FILE --text FILE   (one existing checkpoint)
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file

TOLERANCE = 1e-4


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


class Model:
    """The checkpoint's model in numpy (float64 unless told otherwise), from the tensors' PyTorch
    state_dict names. scripts/quality/cold-start-scan.py runs it in float32."""

    def __init__(self, path, dtype=np.float64):
        with safe_open(path, framework="numpy") as f:
            meta = f.metadata()
        self.cfg = json.loads(meta["model"])
        self.vocab = json.loads(meta["vocab"])
        self.unit = meta["unit"]
        self.dtype = dtype
        t = {k: v.astype(dtype) for k, v in load_file(path).items()}
        c = self.cfg
        self.V, self.H, self.L, self.E = c["vocabSize"], c["hidden"], c["layers"], c["embed"]
        self.cell = c["cell"]
        G = {"lstm": 4, "gru": 3, "rnn": 1}[self.cell] * self.H
        assert len(self.vocab) == self.V, "vocab length != vocabSize"
        self.emb = t["embedding.weight"] if self.E else None
        if self.E:
            assert self.emb.shape == (self.V, self.E)
        self.layers = []
        for k in range(self.L):
            D = self.H if k else (self.E or self.V)
            w = [t[f"rnn.{n}_l{k}"] for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
            assert [a.shape for a in w] == [(G, D), (G, self.H), (G,), (G,)], f"layer {k} shapes {[a.shape for a in w]}"
            self.layers.append(w)
        self.dec_w, self.dec_b = t["decoder.weight"], t["decoder.bias"]
        assert self.dec_w.shape == (self.V, self.H) and self.dec_b.shape == (self.V,)

    def step(self, ids, state):
        """One time step for a batch of ids; state is a list of (h, c) per layer. Returns logits."""
        x = self.emb[ids] if self.E else None
        H = self.H
        for k, (wih, whh, bih, bhh) in enumerate(self.layers):
            h, c = state[k]
            gi = (wih[:, ids].T if (k == 0 and not self.E) else x @ wih.T) + bih   # one-hot: a column of W_ih
            gh = h @ whh.T + bhh
            if self.cell == "lstm":                      # gates i f g o
                g = gi + gh
                i, f, gg, o = sigmoid(g[:, :H]), sigmoid(g[:, H:2 * H]), np.tanh(g[:, 2 * H:3 * H]), sigmoid(g[:, 3 * H:])
                c = f * c + i * gg
                h = o * np.tanh(c)
            elif self.cell == "gru":                     # gates r z n
                r = sigmoid(gi[:, :H] + gh[:, :H])
                z = sigmoid(gi[:, H:2 * H] + gh[:, H:2 * H])
                n = np.tanh(gi[:, 2 * H:] + r * gh[:, 2 * H:])
                h = (1 - z) * n + z * h
            else:                                        # tanh RNN
                h = np.tanh(gi + gh)
            state[k] = (h, c)
            x = h
        return x @ self.dec_w.T + self.dec_b

    def zero_state(self, B):
        return [(np.zeros((B, self.H), self.dtype), np.zeros((B, self.H), self.dtype)) for _ in range(self.L)]

    def nll(self, logits, targets):
        m = logits.max(axis=1, keepdims=True)
        lse = np.log(np.exp(logits - m).sum(axis=1)) + m[:, 0]
        return (lse - logits[np.arange(len(targets)), targets]).sum()

    def loss(self, ids, B):
        """Mean cross-entropy over P = len(ids) - 1 predictions in charrnn eval's stream layout."""
        ids = np.asarray(ids)
        P = len(ids) - 1
        S = P // B
        total = 0.0
        state = self.zero_state(B)
        starts = np.arange(B) * S
        for t in range(S):                                # all B streams together
            logits = self.step(ids[starts + t], state)
            total += self.nll(logits, ids[starts + t + 1])
        tail = [(h[B - 1:B].copy(), c[B - 1:B].copy()) for h, c in state] if S else self.zero_state(1)
        for i in range(B * S, P):                         # the remainder continues the last stream
            logits = self.step(ids[i:i + 1], tail)
            total += self.nll(logits, ids[i + 1:i + 2])
        return total / P


def encode(text, vocab):
    index = {t: i for i, t in enumerate(vocab)}
    ids = [index[ch] for ch in text if ch in index]      # unit "scalar": a Python str iterates scalars
    return ids, sum(1 for ch in text if ch not in index)


def run(cmd, cwd):
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"FAIL: {' '.join(cmd)} exited {r.returncode}:\n{r.stderr}")
    return r.stdout


def check(binary, ckpt, text_path, batch, cwd, label):
    out = run([binary, "eval", "--checkpoint", ckpt, "--json", "--batch", str(batch), "--seq", "17", text_path], cwd)
    ev = json.loads(out.strip().splitlines()[0])
    model = Model(os.path.join(cwd, ckpt) if not os.path.isabs(ckpt) else ckpt)
    assert model.unit == "scalar", "this checker tokenizes by Unicode scalar only"
    with open(os.path.join(cwd, text_path), encoding="utf-8") as f:
        text = f.read()
    ids, unknown = encode(text, model.vocab)
    ours = model.loss(ids, batch)
    ok = abs(ours - ev["loss"]) <= TOLERANCE and ev["tokens"] == len(ids) and ev["unknown"] == unknown \
        and ev["scored"] == len(ids) - 1
    print(f"{'ok  ' if ok else 'FAIL'} {label:28s} numpy {ours:.6f}  charrnn eval {ev['loss']:.6f}  "
          f"|diff| {abs(ours - ev['loss']):.2e}  tokens {len(ids)}/{ev['tokens']}  unknown {unknown}/{ev['unknown']}")
    return ok


def corpus_text():
    lines = ["To be, or not to be, that is the question:", "Whether 'tis nobler in the mind to suffer",
             "The slings and arrows of outrageous fortune,", "Or to take arms against a sea of troubles",
             "床前明月光，疑是地上霜。"]
    return "".join(lines[(i * 7) % len(lines)] + "\n" for i in range(240))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--charrnn", required=True, help="path to the charrnn binary")
    ap.add_argument("--checkpoint", help="check this checkpoint only (needs --text)")
    ap.add_argument("--text", help="text to score (default: a generated one)")
    ap.add_argument("--batch", type=int, default=7, help="eval streams")
    ap.add_argument("--keep", help="work in this folder instead of a temporary one")
    a = ap.parse_args()
    binary = os.path.abspath(a.charrnn)
    if a.checkpoint:
        if not a.text:
            ap.error("--checkpoint needs --text")
        sys.exit(0 if check(binary, os.path.abspath(a.checkpoint), os.path.abspath(a.text), a.batch, os.getcwd(), a.checkpoint) else 1)

    work = a.keep or tempfile.mkdtemp(prefix="charrnn-interop-")
    os.makedirs(work, exist_ok=True)
    with open(os.path.join(work, "corpus.txt"), "w", encoding="utf-8") as f:
        f.write(corpus_text())
    # A text to score: different from the corpus, with a few characters the vocabulary lacks.
    text = a.text or os.path.join(work, "held-out.txt")
    if not a.text:
        with open(text, "w", encoding="utf-8") as f:
            f.write("Whether to be or not, the question is nobler than fortune. 🦊 Zebra!\n" * 30)
    configs = [("lstm", []), ("gru", []), ("rnn", []), ("lstm", ["--embed", "12"]), ("gru", ["--embed", "8", "--layers", "1"])]
    ok = True
    for cell, extra in configs:
        name = f"{cell}{''.join(extra).replace('--', '-')}"
        run([binary, "train", "corpus.txt", "--model", cell, "--hidden", "24", "--seq", "20", "--batch", "8",
             "--max-iters", "40", "--eval-every", "20", "--lr", "0.02", "--threads", "1", "--name", name] + extra, work)
        ok &= check(binary, f"checkpoints/{name}/latest.safetensors", text, a.batch, work, f"{cell} {' '.join(extra)}".strip())
        ok &= check(binary, f"checkpoints/{name}/latest.safetensors", text, 1, work, f"{cell} {' '.join(extra)} (batch 1)".strip())
    print("all checkpoints agree" if ok else "MISMATCH")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
