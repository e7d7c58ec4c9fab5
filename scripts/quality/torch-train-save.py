#!/usr/bin/env python3
"""Trains with the PyTorch reference (../shared/bench/torch_charrnn.py) and saves the trained model as
a safetensors file in charrnn's tensor names and metadata, so that cold-start-scan.py (and
scripts/interop/check_checkpoint.py's Model) can read it: the same scan on a PyTorch-trained model,
fp32 or `--bf16` (CPU autocast), tells what the recipe and the precision do apart from charrnn's kernels.

Usage: torch-train-save.py OUT.safetensors path/to/torch_charrnn.py [its arguments]
       e.g. … --data tinyshakespeare.txt --hidden 512 --dropout 0.2 --epochs 5 --train-frac 0.95 --bf16
Needs torch, numpy and safetensors. nn.LSTM or nn.GRU; one-hot or embedding input.
"""
import json
import runpy
import sys

from safetensors.numpy import save_file


def main():
    if len(sys.argv) < 3:
        raise SystemExit(__doc__.split("\n\n")[1])
    out, script = sys.argv[1], sys.argv[2]
    sys.argv = [script] + sys.argv[3:]
    ns = runpy.run_path(script, run_name="__main__")
    core, chars, a = ns["core"], ns["chars"], ns["args"]
    names = {"dec.": "decoder.", "emb.": "embedding.", "rnn.": "rnn."}
    tensors = {}
    for k, v in core.state_dict().items():
        prefix = next(p for p in names if k.startswith(p))
        tensors[names[prefix] + k[len(prefix):]] = v.detach().float().contiguous().numpy()
    model = {"cell": a.model, "layers": a.layers, "hidden": a.hidden, "embed": max(a.embed, 0),
             "vocabSize": len(chars), "dropout": a.dropout}
    save_file(tensors, out, metadata={"model": json.dumps(model), "vocab": json.dumps(chars), "unit": "scalar",
                                      "trained_by": "torch_charrnn.py " + " ".join(sys.argv[1:])})
    print(f"saved {out}: {len(tensors)} tensors", file=sys.stderr)


if __name__ == "__main__":
    main()
