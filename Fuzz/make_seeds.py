#!/usr/bin/env python3
"""Seed corpora for scripts/fuzz.sh: the hostile inputs listed in ../shared/STYLE.md (safetensors
reference tests) and the corpus hostile-input list (Tests/CharRNNTests/HostileInputTests.swift), plus well-formed examples. Usage: make_seeds.py OUTDIR.
A real charrnn checkpoint is added when a built binary is found (.build/{release,debug}/charrnn)."""
import json, os, struct, subprocess, sys, tempfile

out = sys.argv[1]

def put(target, name, data):
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)

def st(header, data=b"", n=None):
    h = header if isinstance(header, bytes) else json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<Q", len(h) if n is None else n) + h + data

# --- safetensors: STYLE.md rules 1-9 and tensor.rs hostile inputs -----------------------------------
f32 = struct.pack("<6f", *range(6))
put("safetensors", "golden-attn0", st({"attn.0": {"dtype": "F32", "shape": [1, 2, 3], "data_offsets": [0, 24]}}, f32))
put("safetensors", "golden-aligned", st(b'{"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}}' + b" " * 7, f32))
put("safetensors", "meta", st({"__metadata__": {"format": "charrnn", "model": "{}"}, "a": {"dtype": "F32", "shape": [], "data_offsets": [0, 4]}}, b"\0\0\x80?"))
put("safetensors", "too-small", b"\x00\x00\x00")
put("safetensors", "huge-n", b"\xff" * 8 + b"{}")
put("safetensors", "n-past-end", struct.pack("<Q", 1000) + b"{}")
put("safetensors", "not-utf8", st(b'{"\xff":1}'))
put("safetensors", "brace", st(b"{"))
put("safetensors", "overflow-shape", st(b'{"test":{"dtype":"I32","shape":[2,18446744073709551614],"data_offsets":[0,16]}}', b"\0" * 16))
put("safetensors", "bogus-tail", st({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4 + b"extra"))
put("safetensors", "two-short", st({"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}, b"\0" * 14))
put("safetensors", "offsets-gap", st({"a": {"dtype": "U8", "shape": [1], "data_offsets": [1, 2]}}, b"\0\0"))
put("safetensors", "f4-misaligned", st({"a": {"dtype": "F4", "shape": [3], "data_offsets": [0, 2]}}, b"\0\0"))
put("safetensors", "dup-key", st(b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}', b"\0"))
put("safetensors", "whitespace", st(b'  {"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}  ', b"\0"))
put("safetensors", "deep", st(b"[" * 5000 + b"]" * 5000))
put("safetensors", "empty-tensor", st({"e": {"dtype": "F32", "shape": [0, 4], "data_offsets": [0, 0]}}))
# A real checkpoint from a tiny run, when the tool is built.
for binary in (".build/release/charrnn", ".build/debug/charrnn"):
    if os.path.exists(binary):
        with tempfile.TemporaryDirectory() as d:
            text = ("abc ab\nba, cab!\n" * 40).encode()
            open(os.path.join(d, "c.txt"), "wb").write(text)
            for model, extra in (("lstm", []), ("gru", ["--embed", "2"]), ("rnn", ["--layers", "2"])):
                r = subprocess.run([os.path.abspath(binary), "train", "c.txt", "--model", model, "--hidden", "3", "--layers", "1",
                                    "--seq", "4", "--batch", "2", "--max-iters", "2", "--name", model, "--threads", "1"] + extra,
                                   cwd=d, capture_output=True)
                p = os.path.join(d, "checkpoints", model, "latest.safetensors")
                if r.returncode == 0 and os.path.exists(p):
                    put("safetensors", "charrnn-" + model, open(p, "rb").read())
        break

# --- corpus: first byte = mode (bit 0 grapheme, bit 1 NFC) -----------------------------------------
texts = {
    "empty": b"", "newlines": b"\n" * 50, "one-char": b"a" * 100, "bom-only": b"\xef\xbb\xbf",
    "bad-start": b"\xff hello", "bad-middle": b"hello\nwor\xc3\x28ld\n", "bad-end": b"hello \xe4\xb8",
    "overlong-slash": b"a\xc0\xaf", "overlong-3": b"a\xe0\x80\xaf", "surrogate": b"x\xed\xa0\x80y",
    "above-max": b"\xf4\x90\x80\x80", "stray-cont": b"\x80\x80", "nul": b"ab\x00cd\n",
    "crlf": b"one\r\ntwo\r\n", "combining": "cafe\u0301 caf\u00e9 \u1e0b\u0323 A\u030a".encode(),
    "emoji": "👩‍💻 🇫🇷 👍🏽 x".encode(), "cjk": "床前明月光，疑是地上霜。\n".encode(),
    "hangul": "\u1100\u1161\u11a8 한국어".encode(), "nfc-expand": "\u0344\u0958\ufb2c\u0f73".encode(),
    "mixed": "Hello κόσμε こんにちは 🦊\r\n".encode() * 3,
}
for name, t in texts.items():
    for mode in range(4):
        put("corpus", f"{name}-{mode}", bytes([mode]) + t)

# --- csv: first byte = chart flags ------------------------------------------------------------------
hdr = b"iteration,epoch,train_loss,val_loss,learning_rate,grad_norm,tokens_per_sec,elapsed_sec\n"
rows = b"".join(b"%d,%.4f,%.6f,%s,0.002,0.4,70000.0,%.3f\n" % (i, i / 10, 4.2 - i * 0.01, b"2.1" if i % 5 == 0 else b"", i * 0.1) for i in range(1, 40))
csvs = {"loss": hdr + rows, "header-only": hdr, "torn": hdr + rows + b"41,4.1,1.9", "empty": b"",
        "no-newline": hdr[:-1], "nan-inf": hdr + b"1,nan,inf,-inf,0,0,0,0\n2,1e308,1e-308,nan,0,0,0,0\n",
        "huge": hdr + b"9223372036854775807,1e300,1,1,0,0,0,0\n-9223372036854775808,-1e300,0,0,0,0,0,0\n",
        "reordered": b"train_loss,iteration\n1.5,1\n1.4,2\n", "one-row": hdr + b"1,0.1,4.0,4.1,0,0,0,0\n",
        "same-x": hdr + b"5,1,2,2,0,0,0,0\n5,1,2,2,0,0,0,0\n"}
for name, c in csvs.items():
    for mode in (0, 1, 2, 3, 36, 83, 255):
        put("csv", f"{name}-{mode}", bytes([mode]) + c)

# --- prime: first byte = model and sampling controls -----------------------------------------------
primes = {"known": b"To be, or not", "unknown-only": "ЖЖЖ ☃".encode(), "mixed": "café 🦊 ω".encode(),
          "combining": "cafe\u0301".encode(), "crlf": b"line\r\nline\n", "bom": b"\xef\xbb\xbfTo",
          "invalid": b"\xff\xfe To \xc3", "empty": b"", "zwj": "👩‍💻👩".encode(), "flags": "🇫🇷🇫".encode()}
for name, p in primes.items():
    for mode in (0, 1, 2, 3, 0x55, 0xAA, 0xFF):
        put("prime", f"{name}-{mode}", bytes([mode]) + p)

# --- request: serve's request bodies (the whole input is the body) -------------------------------
requests = {
    "ok": b'{"model":"m","prompt":"ab c","max_tokens":8,"temperature":0.8,"top_p":0.9,"top_k":3,"n":2,"seed":7,"stop":["a","\\n"],"stream":true}',
    "ok-minimal": b'{}', "ok-prompt-list": b'{"prompt":["a"]}', "ok-nulls": b'{"prompt":null,"stop":null,"seed":null,"n":null}',
    "ok-unknown-fields": b'{"prompt":"a","user":"u","logit_bias":{"1":2},"extra":[1,{"x":[null,true]}]}',
    "ok-score": b'{"input":["ab","c a"]}', "ok-escapes": b'{"prompt":"\\u00e9\\ud83e\\udd8a\\n\\t\\"","stop":"\\u00e9"}',
    "malformed": b'{"prompt": "a",', "not-object": b'[1,2,3]', "string": b'"x"', "empty": b"",
    "nan": b'{"temperature": NaN}', "inf": b'{"temperature": 1e999}', "neg": b'{"max_tokens": -1}',
    "huge-int": b'{"max_tokens": 123456789012345678901234567890}', "float-int": b'{"n": 1.5}',
    "seed-max": b'{"seed": 18446744073709551615}', "seed-over": b'{"seed": 18446744073709551616}',
    "wrong-types": b'{"prompt": 5, "stream": "yes", "stop": [1]}', "bool-number": b'{"max_tokens": true}',
    "invalid-utf8": b'{"prompt": "\xff\xfe"}', "lone-surrogate": b'{"prompt": "\\ud800"}',
    "deep": b'{"x":' + b"[" * 600 + b"]" * 600 + b"}", "dup-keys": b'{"n":1,"n":2}',
    "long-stop": b'{"stop": "' + b"a" * 300 + b'"}', "many-stops": b'{"stop": ["a","b","c","d","e"]}',
    "nul": b'{"prompt": "a\\u0000b"}', "bom": b'\xef\xbb\xbf{"prompt":"a"}', "whitespace": b' \n\t{"prompt":"a"} \n',
    # logprobs, echo, best_of (issue 20)
    "ok-logprobs-echo": b'{"prompt":"ab c\\u00e9","max_tokens":6,"logprobs":5,"echo":true,"stop":["c a","\\ud83e\\udd8a"],"n":2}',
    "ok-score-echo": b'{"prompt":"a b c","max_tokens":0,"logprobs":0,"echo":true}',
    "ok-best-of": b'{"prompt":"a","max_tokens":5,"n":2,"best_of":4,"temperature":1.2}',
    "logprobs-over": b'{"logprobs":6}', "logprobs-neg": b'{"logprobs":-1}', "logprobs-bool": b'{"logprobs":true}',
    "echo-number": b'{"echo":1}', "best-of-under-n": b'{"best_of":1,"n":2}', "best-of-stream": b'{"best_of":2,"stream":true}',
    # penalties and logit_bias (keys: the character itself, else a decimal token id)
    "ok-penalties": '{"prompt":"ab","max_tokens":8,"n":2,"seed":1,"frequency_penalty":0.5,"presence_penalty":-1,"repetition_penalty":1.3,"repeat_window":3,"logit_bias":{"a":-100,"1":2,"🦊":100}}'.encode(),
    "ok-ban-all-but-one": b'{"prompt":"a","max_tokens":8,"temperature":0,"logit_bias":{"\\n":-100," ":-100,"a":-100,"b":-100,"c":-100,"5":-100}}',
    "ban-all": b'{"logit_bias":{"\\n":-100," ":-100,"a":-100,"b":-100,"c":-100,"5":-100,"6":-100}}',
    "bias-bad-key": b'{"logit_bias":{"zz":1,"01":1,"-1":1}}', "bias-bad-value": b'{"logit_bias":{"a":"1"}}',
    "bias-dup": b'{"logit_bias":{"a":1,"2":1}}', "bias-range": b'{"logit_bias":{"a":-100.01}}', "bias-not-object": b'{"logit_bias":[1]}',
    "penalty-range": b'{"frequency_penalty":2.5,"presence_penalty":-3}', "repetition-zero": b'{"repetition_penalty":0,"repeat_window":-1}',
    # nesting around the 64-level bound (arrays, objects, mixed, unclosed) and brackets inside strings
    "deep-64": b'{"x":' + b"[" * 63 + b"]" * 63 + b"}", "deep-65": b'{"x":' + b"[" * 64 + b"]" * 64 + b"}",
    "deep-objects": b'{"x":' + b'{"a":' * 70 + b"1" + b"}" * 71, "deep-mixed": b'{"x":' + b'[{"a":' * 40 + b"0" + b"}]" * 40 + b"}",
    "deep-unclosed": b'{"x":' + b"[" * 5000, "deep-in-string": b'{"prompt":"' + b'[{\\"' * 100 + b'"}',
    "wide-deep": b'{"x":[' + b",".join([b"[" * 60 + b"]" * 60] * 50) + b"]}",
    # surrogates: lone high/low, high+high, high at the end, reversed pair, a valid pair, in stop/input/keys
    "lone-low": b'{"prompt": "a\\udc00b"}', "high-high": b'{"prompt": "\\ud800\\ud800"}',
    "high-end": b'{"prompt": "\\ud83e"}', "reversed-pair": b'{"prompt": "\\udd8a\\ud83e"}',
    "pair": b'{"prompt": "\\ud83e\\udd8a"}', "surrogate-stop": b'{"stop": ["a", "\\ud800"]}',
    "surrogate-input": b'{"input": ["\\udfff"]}', "surrogate-key": b'{"\\ud800": 1}',
    "high-then-char": b'{"prompt": "\\ud800\\u0041"}', "short-escape": b'{"prompt": "\\ud8"}',
}
for name, body in requests.items():
    put("request", name, body)
