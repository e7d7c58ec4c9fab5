// Export/PageScript.swift — the JavaScript of the exported HTML page: the network's inference step
// (PyTorch nn.LSTM [i f g o] / nn.GRU [r z n] / nn.RNN tanh equations, one-hot or embedding input,
// full or adaptive softmax), the tokenizer (unit, normalization, unknown id as ExportMetadata says),
// the sampler (temperature, top-k, top-p, the unknown token never drawn; temperature 0 = argmax,
// ties to the lowest id; no prime = the start token, as `charrnn sample`), the xoshiro256** generator
// seeded as charrnn seeds it, and the page's controls with streaming output and Stop.
// Arithmetic is float64 over float32 (or bfloat16-widened) weights, so log-probabilities agree with
// `charrnn eval` to float32 rounding; a seed gives the same draws as `charrnn sample --seed` unless a
// draw falls within rounding of a boundary.
// For tests and scripts the page exposes `window.charrnn` once `window.charrnnReady` resolves:
//   score(text)          → {ids, logProbs: log p(ids[i+1] | ids[0…i]) per prediction, total}
//   generate(opts, cb?)  → Promise of the text (opts: prime, length, temperature, topK, topP, seed);
//                          cb(chunk) is called as text streams; stop() ends it
//   complete(opts)       → the same, synchronously (no streaming)
//   loadMs               → milliseconds from the script's start to a ready model

package enum PageScript {
    package static let source = #"""
"use strict";
(() => {
const t0 = performance.now();
const $ = (id) => document.getElementById(id);
const spec = JSON.parse($("charrnn-model").textContent);
const meta = spec.meta;

// ---- weights: base64 → float32 (bfloat16 widened by a 16-bit shift)
function decodeWeights(text, dtype) {
  const bin = atob(text.replace(/\s+/g, ""));
  const n = bin.length, u8 = new Uint8Array(n);
  for (let i = 0; i < n; i++) u8[i] = bin.charCodeAt(i);
  if (dtype === "fp32") return new Float32Array(u8.buffer);
  const half = new Uint16Array(u8.buffer), out = new Uint32Array(half.length);
  for (let i = 0; i < half.length; i++) out[i] = half[i] << 16;
  return new Float32Array(out.buffer);
}
const flat = decodeWeights($("charrnn-weights").textContent, spec.dtype);
const T = {};
for (const t of spec.tensors) T[t.name] = flat.subarray(t.offset, t.offset + t.shape.reduce((a, b) => a * b, 1));

// ---- the network
const V = meta.vocab_size, H = meta.hidden, L = meta.layers, E = meta.embed, cell = meta.cell;
const G = { lstm: 4, gru: 3, rnn: 1 }[cell] * H;
const layers = [];
for (let k = 0; k < L; k++) {
  layers.push({ D: k > 0 ? H : (E > 0 ? E : V), wih: T["rnn.weight_ih_l" + k], whh: T["rnn.weight_hh_l" + k],
                bih: T["rnn.bias_ih_l" + k], bhh: T["rnn.bias_hh_l" + k] });
}
let table = null;                      // one-hot input: (V, G) = W_ihᵀ of layer 0, row v = W_ih[:, v]
if (E === 0) {
  table = new Float32Array(V * G);
  const w = layers[0].wih;
  for (let g = 0; g < G; g++) for (let v = 0; v < V; v++) table[v * G + g] = w[g * V + v];
}
const ad = spec.adaptive;
const gx = new Float64Array(G), gh = new Float64Array(G);
const K = ad ? ad.bounds[0] + ad.widths.length : 0;
const headZ = new Float64Array(K), proj = new Float64Array(ad ? Math.max(...ad.widths) : 0);
const tailU = new Float64Array(ad ? Math.max(...ad.bounds.slice(1).map((b, i) => b - ad.bounds[i])) : 0);

// out[r] = b[r] + Σ_c W[r, c] x[c]   (W row-major, rows × cols)
function matvec(W, b, x, rows, cols, out) {
  for (let r = 0; r < rows; r++) {
    const o = r * cols;
    let s0 = 0, s1 = 0, s2 = 0, s3 = 0, c = 0;
    for (; c + 3 < cols; c += 4) {
      s0 += W[o + c] * x[c]; s1 += W[o + c + 1] * x[c + 1]; s2 += W[o + c + 2] * x[c + 2]; s3 += W[o + c + 3] * x[c + 3];
    }
    for (; c < cols; c++) s0 += W[o + c] * x[c];
    out[r] = (b ? b[r] : 0) + ((s0 + s1) + (s2 + s3));
  }
}
const sigmoid = (v) => 1 / (1 + Math.exp(-v));
function logSumExp(z, n) {
  let m = -Infinity;
  for (let i = 0; i < n; i++) if (z[i] > m) m = z[i];
  let s = 0;
  for (let i = 0; i < n; i++) s += Math.exp(z[i] - m);
  return m + Math.log(s);
}

function newState() {
  return { h: layers.map(() => new Float64Array(H)), c: layers.map(() => new Float64Array(H)) };
}

// Feeds `token`, advances `st`, writes log p(next = v) for every id v into `out` (V).
function step(token, st, out) {
  let x = null;
  for (let k = 0; k < L; k++) {
    const l = layers[k], h = st.h[k], c = st.c[k];
    if (k === 0 && E === 0) {
      const o = token * G;
      for (let g = 0; g < G; g++) gx[g] = table[o + g] + l.bih[g];
    } else {
      matvec(l.wih, l.bih, k === 0 ? T["embedding.weight"].subarray(token * E, token * E + E) : x, G, l.D, gx);
    }
    matvec(l.whh, l.bhh, h, G, H, gh);
    if (cell === "lstm") {
      for (let j = 0; j < H; j++) {
        const i = sigmoid(gx[j] + gh[j]), f = sigmoid(gx[H + j] + gh[H + j]);
        const g = Math.tanh(gx[2 * H + j] + gh[2 * H + j]), o = sigmoid(gx[3 * H + j] + gh[3 * H + j]);
        c[j] = f * c[j] + i * g;
        h[j] = o * Math.tanh(c[j]);
      }
    } else if (cell === "gru") {
      for (let j = 0; j < H; j++) {
        const r = sigmoid(gx[j] + gh[j]), z = sigmoid(gx[H + j] + gh[H + j]);
        const n = Math.tanh(gx[2 * H + j] + r * gh[2 * H + j]);
        h[j] = (1 - z) * n + z * h[j];
      }
    } else {
      for (let j = 0; j < H; j++) h[j] = Math.tanh(gx[j] + gh[j]);
    }
    x = h;
  }
  if (!ad) {
    matvec(T["decoder.weight"], T["decoder.bias"], x, V, H, out);
    const lse = logSumExp(out, V);
    for (let v = 0; v < V; v++) out[v] -= lse;
    return;
  }
  const S = ad.bounds[0], C = ad.widths.length;
  matvec(T["decoder.head.weight"], T["decoder.head.bias"], x, K, H, headZ);
  const lse = logSumExp(headZ, K);
  for (let j = 0; j < K; j++) headZ[j] -= lse;
  for (let j = 0; j < S; j++) out[ad.order[j]] = headZ[j];
  for (let i = 0; i < C; i++) {
    const w = ad.widths[i], n = ad.bounds[i + 1] - ad.bounds[i];
    matvec(T["decoder.tail." + i + ".0.weight"], null, x, w, H, proj);
    matvec(T["decoder.tail." + i + ".1.weight"], null, proj, n, w, tailU);
    const base = headZ[S + i] - logSumExp(tailU, n);
    for (let j = 0; j < n; j++) out[ad.order[ad.bounds[i] + j]] = base + tailU[j];
  }
}

// ---- tokenizer (as Vocabulary.encode: BOM skipped, NFC first if asked, unit scalar or grapheme)
const ids = new Map(meta.vocab.map((t, i) => [t, i]));
const unk = meta.unknown_id;
function encode(text) {
  if (meta.normalize === "nfc") text = text.normalize("NFC");
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  if (meta.unit === "grapheme" && !(window.Intl && Intl.Segmenter)) throw new Error("this browser cannot split text into graphemes (no Intl.Segmenter)");
  const pieces = meta.unit === "grapheme"
    ? Array.from(new Intl.Segmenter(undefined, { granularity: "grapheme" }).segment(text), (s) => s.segment)
    : Array.from(text);
  const out = [], unknown = [];
  for (const p of pieces) {
    const id = ids.get(p);
    if (id !== undefined) out.push(id);
    else { if (unk !== null) out.push(unk); if (!unknown.includes(p)) unknown.push(p); }
  }
  return { ids: out, unknown };
}

// ---- xoshiro256** seeded with SplitMix64, as charrnn's Xoshiro256(seed:)
const M64 = (1n << 64n) - 1n;
const rotl = (x, k) => ((x << BigInt(k)) | (x >> BigInt(64 - k))) & M64;
class Rng {
  constructor(seed) {
    let z = BigInt.asUintN(64, BigInt(seed));
    const mix = () => {
      z = (z + 0x9E3779B97F4A7C15n) & M64;
      let r = z;
      r = ((r ^ (r >> 30n)) * 0xBF58476D1CE4E5B9n) & M64;
      r = ((r ^ (r >> 27n)) * 0x94D049BB133111EBn) & M64;
      return r ^ (r >> 31n);
    };
    this.s = [mix(), mix(), mix(), mix()];
  }
  next() {
    const s = this.s;
    const result = (rotl((s[1] * 5n) & M64, 7) * 9n) & M64;
    const t = (s[1] << 17n) & M64;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3]; s[2] ^= t; s[3] = rotl(s[3], 45);
    return result;
  }
  nextDouble() { return Number(this.next() >> 11n) / 9007199254740992; }
}

// ---- sampler (as TokenDrawer)
const probs = new Float64Array(V), order = new Int32Array(V);
function argmax(lp) {
  let best = unk === 0 && V > 1 ? 1 : 0;
  for (let i = 1; i < V; i++) if (lp[i] > lp[best] && i !== unk) best = i;
  return best;
}
function draw(lp, o, rng) {
  if (o.temperature === 0) return argmax(lp);
  let m = -Infinity;
  for (let i = 0; i < V; i++) if (lp[i] > m) m = lp[i];
  let s = 0;
  for (let i = 0; i < V; i++) { probs[i] = Math.exp((lp[i] - m) / o.temperature); s += probs[i]; }
  if (unk !== null && V > 1) { s -= probs[unk]; probs[unk] = 0; }
  const k = o.topK > 0 ? Math.min(o.topK, V) : V;
  if (k === V && o.topP >= 1) {
    const u = rng.nextDouble() * s;
    let acc = 0;
    for (let i = 0; i < V; i++) { acc += probs[i]; if (u < acc) return i; }
    let i = V - 1;
    while (i > 0 && probs[i] === 0) i--;
    return i;
  }
  for (let i = 0; i < V; i++) order[i] = i;
  order.sort((a, b) => (probs[b] - probs[a]) || (a - b));
  let keep = k;
  if (o.topP < 1) {
    const target = o.topP * s;
    let acc = 0;
    for (let r = 0; r < k; r++) { acc += probs[order[r]]; if (acc >= target) { keep = r + 1; break; } }
  }
  let kept = 0;
  for (let r = 0; r < keep; r++) kept += probs[order[r]];
  const u = rng.nextDouble() * kept;
  let acc = 0;
  for (let r = 0; r < keep; r++) { acc += probs[order[r]]; if (u < acc) return order[r]; }
  return order[keep - 1];
}

// ---- generation: prime (or the start token), then `length` draws, each fed back
function options(o) {
  const seed = o.seed === undefined || o.seed === null || String(o.seed).trim() === ""
    ? BigInt(Math.floor(Math.random() * 2 ** 53)) + 1n : BigInt(String(o.seed).trim());
  return { prime: o.prime || "", length: Math.max(0, o.length | 0), temperature: Number(o.temperature ?? 0.8),
           topK: Math.max(0, o.topK | 0), topP: Number(o.topP ?? 1), seed };
}
function begin(o) {
  const st = newState(), lp = new Float64Array(V);
  let skipped = [];
  if (o.prime !== "") {
    const e = encode(o.prime);
    if (e.ids.length === 0 && e.unknown.length > 0) throw new Error("the prime text has no character in the model's vocabulary");
    for (const id of e.ids) step(id, st, lp);
    skipped = e.unknown;
  } else if (meta.start_id !== null) {
    step(meta.start_id, st, lp);
  } else {
    lp.fill(0);                         // no start token: the first distribution is uniform
  }
  return { st, lp, rng: new Rng(o.seed), skipped };
}
function complete(opts) {
  const o = options(opts), g = begin(o);
  let text = o.prime;
  for (let n = 0; n < o.length; n++) { const t = draw(g.lp, o, g.rng); text += meta.vocab[t]; step(t, g.st, g.lp); }
  return text;
}
let stopping = false, skipped = [];
async function generate(opts, onChunk) {
  const o = options(opts), g = begin(o);
  stopping = false; skipped = g.skipped;
  let text = o.prime, n = 0;
  if (onChunk) onChunk(o.prime, 0);
  while (n < o.length && !stopping) {
    const until = performance.now() + 12;
    let chunk = "";
    while (n < o.length && performance.now() < until) {
      const t = draw(g.lp, o, g.rng); chunk += meta.vocab[t]; step(t, g.st, g.lp); n++;
    }
    text += chunk;
    if (onChunk) onChunk(chunk, n);
    await new Promise((r) => setTimeout(r, 0));
  }
  return text;
}
function score(text) {
  const e = encode(text).ids, st = newState(), lp = new Float64Array(V), out = [];
  let total = 0;
  for (let i = 0; i + 1 < e.length; i++) { step(e[i], st, lp); out.push(lp[e[i + 1]]); total += lp[e[i + 1]]; }
  return { ids: e, logProbs: out, total };
}

// ---- the page
for (const [input, out] of [["temperature", "temperatureValue"], ["topP", "topPValue"]]) {
  const update = () => { $(out).textContent = Number($(input).value).toFixed(2); };
  $(input).addEventListener("input", update); update();
}
function setRunning(running, status) {
  $("start").disabled = running; $("stop").disabled = !running;
  $("status").textContent = status;
}
async function onGenerate() {
  const out = $("output");
  out.textContent = "";
  const p = document.createElement("span"); p.className = "prompt"; out.appendChild(p);
  const gen = document.createTextNode(""); out.appendChild(gen);
  setRunning(true, "generating…");
  const started = performance.now();
  let count = 0, first = true;
  try {
    const length = Math.max(1, Math.min(100000, parseInt($("length").value, 10) || 1));
    await generate({ prime: $("prompt").value, length, temperature: Number($("temperature").value), topP: Number($("topP").value),
                     topK: parseInt($("topK").value, 10) || 0, seed: $("seed").value }, (chunk, n) => {
      if (first) { p.textContent = chunk; first = false; return; }
      gen.appendData(chunk); count = n;
      const sec = (performance.now() - started) / 1000;
      $("status").textContent = n + " characters, " + sec.toFixed(1) + " s, " + Math.round(n / Math.max(sec, 1e-3)) + " chars/s";
    });
    const sec = (performance.now() - started) / 1000;
    const note = skipped.length ? " · prompt characters not in the vocabulary " + (unk === null ? "skipped: " : "read as unknown: ") +
      skipped.map((c) => JSON.stringify(c)).join(" ") : "";
    setRunning(false, (stopping ? "stopped after " : "") + count + " characters, " + Math.round(count / Math.max(sec, 1e-3)) + " chars/s" + note);
  } catch (e) {
    setRunning(false, "error: " + e.message);
  }
}
$("start").addEventListener("click", onGenerate);
$("stop").addEventListener("click", () => { stopping = true; });
$("prompt").addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey) && !$("start").disabled) onGenerate(); });

const loadMs = performance.now() - t0;
const input = E > 0 ? "embedding " + E : "one-hot input";
const loss = meta.val_loss != null ? ", best val loss " + Number(meta.val_loss).toFixed(3) : "";
$("model").textContent = cell + ", " + L + " × " + H + " hidden, " + input + ", " + (ad ? "adaptive" : "full") + " softmax, vocabulary " + V +
  ", trained on " + meta.corpus + ", " + meta.iteration + " iterations" + loss + " · " + spec.dtype + " weights · charrnn " + spec.version +
  " · loaded in " + Math.round(loadMs) + " ms, runs offline";
$("start").disabled = false;
window.charrnn = { meta, score, generate, complete, stop: () => { stopping = true; }, loadMs, encode };
window.charrnnReady = Promise.resolve(window.charrnn);
})();
"""#
}
