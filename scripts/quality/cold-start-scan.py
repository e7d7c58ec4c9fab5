#!/usr/bin/env python3
"""Cold starts of a checkpoint: cut a corpus into streams of S characters, run each from a zero state
(the layout of `charrnn eval --batch`), and report how the per-stream mean loss is spread: median,
mean, the streams above 2 and 3 nats/char, the worst, and the largest |c| (LSTM cell state) reached.

A mean validation loss can hide a model that fails badly on a few starts: a cell state that grows
without bound on one stream in a hundred, at 30+ nats/char, moves the mean by a few percent and is
invisible in the median. This is how LSTMs trained without cold starts were caught doing that
(README, Training in bf16; `train --cold-start-every`). The forward is the independent numpy model of
scripts/interop/check_checkpoint.py (PyTorch's nn.LSTM / nn.GRU / nn.RNN equations on the
checkpoint's tensors, named as their state_dicts), run here in float32, so charrnn's kernels play no part.

Usage: cold-start-scan.py CHECKPOINT.safetensors CORPUS.txt [--length S] [--streams N]
Needs numpy and safetensors (pip). One-hot or embedding input, full softmax.
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "interop"))
from check_checkpoint import Model  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("corpus")
    ap.add_argument("--length", type=int, default=200, help="characters per stream (default 200)")
    ap.add_argument("--streams", type=int, default=2000, help="at most this many streams, from the start (default 2000)")
    a = ap.parse_args()
    try:
        return scan(a)
    except (OSError, KeyError, ValueError, AssertionError) as e:
        raise SystemExit(f"error: {a.checkpoint}: {e}")


def scan(a):
    model = Model(a.checkpoint, dtype=np.float32)
    S = a.length
    ids_of = {s: i for i, s in enumerate(model.vocab)}
    ids = np.array([ids_of.get(ch, -1) for ch in open(a.corpus, encoding="utf-8").read()])
    n = min((len(ids) - 1) // S, a.streams)
    X, Y = ids[:n * S].reshape(n, S), ids[1:n * S + 1].reshape(n, S)
    known = (X >= 0).all(axis=1) & (Y >= 0).all(axis=1)      # streams with a character outside the vocabulary are left out
    X, Y = X[known], Y[known]
    B = len(X)
    state = model.zero_state(B)
    loss, cmax = np.zeros(B), np.zeros(B, np.float32)
    for s in range(S):
        z = model.step(X[:, s], state)
        m = z.max(axis=1, keepdims=True)
        loss += np.log(np.exp(z - m).sum(axis=1)) + m[:, 0] - z[np.arange(B), Y[:, s]]
        if model.cell == "lstm":
            for _, c in state:
                cmax = np.maximum(cmax, np.abs(c).max(axis=1))
    loss /= S
    cells = (f"; largest |c| {cmax.max():.1f} (median of streams {np.median(cmax):.1f})" if model.cell == "lstm" else "")
    print(f"{a.checkpoint}: {B} streams of {S} characters from a zero state: mean {loss.mean():.4f}, "
          f"median {np.median(loss):.4f} nats/char; above 2: {(loss > 2).sum()}, above 3: {(loss > 3).sum()} "
          f"({100 * (loss > 3).mean():.2f}%); worst {loss.max():.2f}" + cells)


if __name__ == "__main__":
    main()
