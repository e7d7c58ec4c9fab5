"""An independent numpy (float64) implementation of a charrnn checkpoint's next-token distribution,
read from the .safetensors file by its PyTorch state_dict names: nn.LSTM [i f g o] / nn.GRU [r z n] /
nn.RNN tanh, one-hot (a column of W_ih) or embedding input, full softmax or the adaptive softmax of
nn.AdaptiveLogSoftmaxWithLoss (head over the shortlist + one entry per cluster, tails i with two
projections, ranks mapped to ids by the model config's `order`). The export checks compare the ONNX
model and the HTML page with it token by token."""
import json

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def log_softmax(z):
    m = z.max(axis=-1, keepdims=True)
    return z - (np.log(np.exp(z - m).sum(axis=-1, keepdims=True)) + m)


class Reference:
    def __init__(self, path):
        with safe_open(path, framework="numpy") as f:
            meta = f.metadata()
        self.cfg = c = json.loads(meta["model"])
        self.vocab = json.loads(meta["vocab"])
        self.unk = int(meta["unk_id"]) if "unk_id" in meta else None
        t = {k: v.astype(np.float64) for k, v in load_file(path).items()}
        self.t = t
        self.V, self.H, self.L, self.E, self.cell = c["vocabSize"], c["hidden"], c["layers"], c["embed"], c["cell"]
        self.layers = [[t[f"rnn.{n}_l{k}"] for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")] for k in range(self.L)]
        self.adaptive = c.get("adaptive")

    def zero_state(self):
        return [(np.zeros(self.H), np.zeros(self.H)) for _ in range(self.L)]

    def step(self, token, state):
        """Feeds one token id; returns log p(next = v) for every id (V)."""
        H = self.H
        x = self.t["embedding.weight"][token] if self.E else None
        for k, (wih, whh, bih, bhh) in enumerate(self.layers):
            h, c = state[k]
            gi = (wih[:, token] if (k == 0 and not self.E) else wih @ x) + bih
            gh = whh @ h + bhh
            if self.cell == "lstm":
                g = gi + gh
                i, f, gg, o = sigmoid(g[:H]), sigmoid(g[H:2 * H]), np.tanh(g[2 * H:3 * H]), sigmoid(g[3 * H:])
                c = f * c + i * gg
                h = o * np.tanh(c)
            elif self.cell == "gru":
                r = sigmoid(gi[:H] + gh[:H])
                z = sigmoid(gi[H:2 * H] + gh[H:2 * H])
                n = np.tanh(gi[2 * H:] + r * gh[2 * H:])
                h = (1 - z) * n + z * h
            else:
                h = np.tanh(gi + gh)
            state[k] = (h, c)
            x = h
        if not self.adaptive:
            return log_softmax(self.t["decoder.weight"] @ x + self.t["decoder.bias"])
        a = self.adaptive
        cut = a["cutoffs"] + [self.V]
        S, C = cut[0], len(a["cutoffs"])
        z = log_softmax(self.t["decoder.head.weight"] @ x + self.t["decoder.head.bias"])
        ranked = [z[:S]]
        for i in range(C):
            u = self.t[f"decoder.tail.{i}.1.weight"] @ (self.t[f"decoder.tail.{i}.0.weight"] @ x)
            ranked.append(log_softmax(u) + z[S + i])
        ranked = np.concatenate(ranked)
        out = np.empty(self.V)
        out[np.asarray(a["order"])] = ranked
        return out

    def token_log_probs(self, ids):
        """log p(ids[i+1] | ids[0..i]) for every prediction, from a zero state (charrnn eval --batch 1)."""
        state, out = self.zero_state(), []
        for i in range(len(ids) - 1):
            out.append(self.step(ids[i], state)[ids[i + 1]])
        return np.asarray(out)
