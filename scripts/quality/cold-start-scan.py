#!/usr/bin/env python3
"""Cold starts of a checkpoint: cut a corpus into streams of S characters, run each from a zero state
(the layout of `charrnn eval --batch`), and report how the per-stream mean loss is spread: median,
mean, the streams above 2 and 3 nats/char, the worst, and the largest |c| (LSTM cell state) reached.

A mean validation loss can hide a model that fails badly on a few starts: a cell state that grows
without bound on one stream in a hundred, at 30+ nats/char, moves the mean by a few percent and is
invisible in the median. This is how bf16-trained LSTMs were caught doing that (README, Training in
bf16). The forward is an independent float32 numpy implementation of PyTorch's nn.LSTM equations on
the checkpoint's tensors (names as `torch.nn.LSTM`'s state_dict), so charrnn's kernels play no part.

Usage: cold-start-scan.py CHECKPOINT.safetensors CORPUS.txt [--length S] [--streams N]
Needs numpy and safetensors (pip). LSTM checkpoints, one-hot or embedding input, full softmax.
"""
import argparse
import json

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("corpus")
    ap.add_argument("--length", type=int, default=200, help="characters per stream (default 200)")
    ap.add_argument("--streams", type=int, default=2000, help="at most this many streams, from the start (default 2000)")
    a = ap.parse_args()
    try:
        return scan(a)
    except (OSError, KeyError, ValueError) as e:
        raise SystemExit(f"error: {e}")


def scan(a):
    with safe_open(a.checkpoint, framework="numpy") as f:
        meta = f.metadata()
    cfg, vocab = json.loads(meta["model"]), json.loads(meta["vocab"])
    if cfg["cell"] != "lstm":
        raise SystemExit(f"error: {a.checkpoint}: an LSTM checkpoint is needed (this one is {cfg['cell']})")
    t = load_file(a.checkpoint)
    if "decoder.weight" not in t:
        raise SystemExit(f"error: {a.checkpoint}: no decoder.weight (adaptive softmax checkpoints are not supported here)")
    H, L, S = cfg["hidden"], cfg["layers"], a.length
    ids_of = {s: i for i, s in enumerate(vocab)}
    ids = np.array([ids_of.get(ch, -1) for ch in open(a.corpus, encoding="utf-8").read()])
    n = min((len(ids) - 1) // S, a.streams)
    X, Y = ids[:n * S].reshape(n, S), ids[1:n * S + 1].reshape(n, S)
    known = (X >= 0).all(axis=1) & (Y >= 0).all(axis=1)      # streams with a character outside the vocabulary are left out
    X, Y = X[known], Y[known]
    B = len(X)
    layers = [(t[f"rnn.weight_ih_l{k}"], t[f"rnn.weight_hh_l{k}"], t[f"rnn.bias_ih_l{k}"] + t[f"rnn.bias_hh_l{k}"]) for k in range(L)]
    emb, dw, db = t.get("embedding.weight"), t["decoder.weight"], t["decoder.bias"]
    h = [np.zeros((B, H), np.float32) for _ in range(L)]
    c = [np.zeros((B, H), np.float32) for _ in range(L)]
    loss, cmax = np.zeros(B), np.zeros(B, np.float32)
    sigmoid = lambda x: 1 / (1 + np.exp(-x))
    for s in range(S):
        x = None
        for k, (wih, whh, b) in enumerate(layers):
            if k == 0:
                gi = wih[:, X[:, s]].T if emb is None else emb[X[:, s]] @ wih.T     # one-hot: a column of W_ih
            else:
                gi = x @ wih.T
            g = gi + h[k] @ whh.T + b                                              # gates i f g o
            i, fg, gg, o = sigmoid(g[:, :H]), sigmoid(g[:, H:2 * H]), np.tanh(g[:, 2 * H:3 * H]), sigmoid(g[:, 3 * H:])
            c[k] = fg * c[k] + i * gg
            h[k] = o * np.tanh(c[k])
            x = h[k]
            cmax = np.maximum(cmax, np.abs(c[k]).max(axis=1))
        z = x @ dw.T + db
        m = z.max(axis=1, keepdims=True)
        loss += np.log(np.exp(z - m).sum(axis=1)) + m[:, 0] - z[np.arange(B), Y[:, s]]
    loss /= S
    print(f"{a.checkpoint}: {B} streams of {S} characters from a zero state: mean {loss.mean():.4f}, "
          f"median {np.median(loss):.4f} nats/char; above 2: {(loss > 2).sum()}, above 3: {(loss > 3).sum()} "
          f"({100 * (loss > 3).mean():.2f}%); worst {loss.max():.2f}; largest |c| {cmax.max():.1f} (median of streams {np.median(cmax):.1f})")


if __name__ == "__main__":
    main()
