// CharRNNServer/Page.swift — the page served at GET /: one self-contained HTML file (inline CSS and
// JS, no external scripts, fonts or images), so it works offline. It reads the model's description
// from /v1/models and streams /v1/completions (SSE over fetch) into the output box; Stop aborts
// the fetch, which closes the connection and frees the row on the server. Controls: temperature,
// top-p, top-k, length, seed (empty = random; the seed used, from the stream's first event, is
// shown with the status, so a text can be asked for again); Ctrl+Enter (⌘+Enter) in the prompt
// generates. The buttons have their own row, so they never wrap apart. The stylesheet is
// PageStyle.css, shared with the page `charrnn export --format html` writes, plus the rules here.

import CharRNN

let webPage = #"""
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>charrnn</title>
<style>
\#(PageStyle.css)  .actions { display: flex; align-items: center; gap: 12px; margin: 12px 0 0; }
  .actions button { flex: none; white-space: nowrap; }
  kbd { font: 12px ui-monospace, Menlo, Consolas, monospace; border: 1px solid var(--line); border-radius: 4px; padding: 0 4px; }
  .hint { color: var(--muted); font-size: 12px; white-space: nowrap; }
  input#seed { width: 13em; }
  input#topK { width: 64px; }
</style>
</head>
<body>
<main>
  <h1>charrnn</h1>
  <p id="model">loading model…</p>
  <textarea id="prompt" placeholder="Type the start of the text (or leave empty)…" aria-label="prompt"></textarea>
  <div class="controls">
    <label>temperature <input id="temperature" type="range" min="0" max="2" step="0.05" value="0.8"><output id="temperatureValue">0.80</output></label>
    <label>top-p <input id="topP" type="range" min="0.05" max="1" step="0.05" value="1"><output id="topPValue">1.00</output></label>
    <label title="draw only among the k most likely characters (0 = off)">top-k <input id="topK" type="number" min="0" step="1" value="0"></label>
    <label>length <input id="length" type="number" min="1" max="4096" value="500"></label>
    <label title="the same seed, prompt and settings give the same text (empty = random)">seed <input id="seed" type="text" inputmode="numeric" placeholder="random" autocomplete="off"></label>
  </div>
  <div class="actions">
    <button id="start" title="Ctrl+Enter in the text box">Generate</button>
    <button id="stop" disabled>Stop</button>
    <span class="hint"><kbd>Ctrl</kbd>+<kbd>Enter</kbd> generates</span>
    <span id="status"></span>
  </div>
  <div id="output" aria-live="polite"></div>
</main>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
let modelId = null, controller = null, maxTokens = 4096;

for (const [input, out, digits] of [["temperature", "temperatureValue", 2], ["topP", "topPValue", 2]]) {
  const update = () => { $(out).textContent = Number($(input).value).toFixed(digits); };
  $(input).addEventListener("input", update); update();
}

async function loadModel() {
  try {
    const r = await fetch("/v1/models");
    const m = (await r.json()).data[0];
    modelId = m.id;
    const c = m.charrnn || {};
    maxTokens = (m.limits && m.limits.max_tokens) || maxTokens;
    $("length").max = String(maxTokens);
    const input = c.embed > 0 ? "embedding " + c.embed : "one-hot input";
    const loss = c.bestValLoss != null ? ", best val loss " + Number(c.bestValLoss).toFixed(3) : "";
    const corpus = c.corpus && c.corpus.name ? ", trained on " + c.corpus.name : "";
    $("model").textContent = m.id + ": " + c.cell + ", " + c.layers + " × " + c.hidden + " hidden, " + input + ", vocabulary " +
      c.vocabSize + corpus + ", " + c.iteration + " iterations" + loss + " · charrnn " + m.charrnn_version;
  } catch (e) {
    $("model").textContent = "could not read /v1/models: " + e;
  }
}

function setRunning(running, status) {
  $("start").disabled = running; $("stop").disabled = !running;
  $("status").textContent = status;
}

async function generate() {
  const prompt = $("prompt").value;
  const out = $("output");
  out.textContent = "";
  const p = document.createElement("span"); p.className = "prompt"; p.textContent = prompt; out.appendChild(p);
  const gen = document.createTextNode(""); out.appendChild(gen);
  controller = new AbortController();
  setRunning(true, "generating…");
  let chars = 0, usedSeed = null;
  const seedNote = () => (usedSeed !== null ? " · seed " + usedSeed : "");
  const t0 = performance.now();
  try {
    const length = Math.max(1, Math.min(maxTokens, parseInt($("length").value, 10) || 1));
    const topK = Math.max(0, parseInt($("topK").value, 10) || 0);
    const seedText = $("seed").value.trim();
    if (seedText !== "" && !/^[0-9]{1,20}$/.test(seedText)) throw new Error("the seed must be a whole number from 0 to 18446744073709551615");
    let body = JSON.stringify({ model: modelId, prompt, max_tokens: length, temperature: Number($("temperature").value),
                                top_p: Number($("topP").value), top_k: topK, stream: true });
    // the seed's digits as typed: a JavaScript number would round seeds above 2^53
    if (seedText !== "") body = body.slice(0, -1) + ',"seed":' + seedText + "}";
    const r = await fetch("/v1/completions", {
      method: "POST", headers: { "Content-Type": "application/json" }, signal: controller.signal, body,
    });
    if (!r.ok) {
      const e = await r.json().catch(() => ({}));
      throw new Error((e.error && e.error.message) || ("HTTP " + r.status));
    }
    const reader = r.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "", finish = null;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, cut); buffer = buffer.slice(cut + 2);
        if (!event.startsWith("data: ")) continue;
        const data = event.slice(6);
        if (data === "[DONE]") continue;
        if (usedSeed === null) {   // the first event carries the seed used (its digits: it may exceed 2^53)
          const m = /,"seed":([0-9]+)}$/.exec(data);
          if (m) usedSeed = m[1];
        }
        const chunk = JSON.parse(data);
        if (chunk.error) throw new Error(chunk.error.message);
        for (const c of chunk.choices || []) {
          gen.appendData(c.text);
          chars += [...c.text].length;
          if (c.finish_reason) finish = c.finish_reason;
        }
        $("status").textContent = chars + " characters, " + ((performance.now() - t0) / 1000).toFixed(1) + " s" + seedNote();
      }
    }
    setRunning(false, chars + " characters" + (finish ? " (" + finish + ")" : "") + seedNote());
  } catch (e) {
    if (e.name === "AbortError") setRunning(false, "stopped after " + chars + " characters" + seedNote());
    else setRunning(false, "error: " + e.message);
  } finally {
    controller = null;
  }
}

$("start").addEventListener("click", generate);
$("stop").addEventListener("click", () => { if (controller) controller.abort(); });
$("prompt").addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) generate(); });
loadModel();
</script>
</body>
</html>
"""#
