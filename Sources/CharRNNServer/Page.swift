// CharRNNServer/Page.swift — the page served at GET /: one self-contained HTML file (inline CSS and
// JS, no external scripts, fonts or images), so it works offline. It reads the model's description
// from /v1/models and streams /v1/completions (SSE over fetch) into the output box; Stop aborts
// the fetch, which closes the connection and frees the row on the server. The stylesheet is
// PageStyle.css, shared with the page `charrnn export --format html` writes.

import CharRNN

let webPage = #"""
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>charrnn</title>
<style>
\#(PageStyle.css)</style>
</head>
<body>
<main>
  <h1>charrnn</h1>
  <p id="model">loading model…</p>
  <textarea id="prompt" placeholder="Type the start of the text (or leave empty)…" aria-label="prompt"></textarea>
  <div class="controls">
    <label>temperature <input id="temperature" type="range" min="0" max="2" step="0.05" value="0.8"><output id="temperatureValue">0.80</output></label>
    <label>top-p <input id="topP" type="range" min="0.05" max="1" step="0.05" value="1"><output id="topPValue">1.00</output></label>
    <label>length <input id="length" type="number" min="1" max="4096" value="500"></label>
    <button id="start">Generate</button>
    <button id="stop" disabled>Stop</button>
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
  let chars = 0;
  const t0 = performance.now();
  try {
    const length = Math.max(1, Math.min(maxTokens, parseInt($("length").value, 10) || 1));
    const r = await fetch("/v1/completions", {
      method: "POST", headers: { "Content-Type": "application/json" }, signal: controller.signal,
      body: JSON.stringify({ model: modelId, prompt, max_tokens: length, temperature: Number($("temperature").value),
                             top_p: Number($("topP").value), stream: true }),
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
        const chunk = JSON.parse(data);
        if (chunk.error) throw new Error(chunk.error.message);
        for (const c of chunk.choices || []) {
          gen.appendData(c.text);
          chars += [...c.text].length;
          if (c.finish_reason) finish = c.finish_reason;
        }
        $("status").textContent = chars + " characters, " + ((performance.now() - t0) / 1000).toFixed(1) + " s";
      }
    }
    setRunning(false, chars + " characters" + (finish ? " (" + finish + ")" : ""));
  } catch (e) {
    if (e.name === "AbortError") setRunning(false, "stopped after " + chars + " characters");
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
