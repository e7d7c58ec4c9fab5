#!/usr/bin/env bash
# scripts/serve-test.sh — `charrnn serve` end to end, on 127.0.0.1 only, every request bounded in
# count and time: builds, trains a tiny checkpoint, starts the server on a free port (--port 0),
# and checks with curl (completions = `charrnn sample`, streaming, stop, models, health, score =
# `charrnn eval`, every error class, hostile bodies, a burst of dropped connections, disconnect
# frees rows — streaming or not, and reaches the access log, 429 with Retry-After; HTTP/1.0, Expect:
# 100-continue, malformed chunks, HEAD, 405, favicon, deep JSON, lone surrogates), with the openai Python
# package (non-streaming and streaming; logprobs, echo scoring = `charrnn eval --batch 1`, best_of;
# penalties and logit_bias) and with headless Chromium (type, generate, text grows, stop,
# screenshot); SIGTERM during a stream must end the server cleanly within the grace time, a second
# one at once; RSS must not grow over 10,000 requests; under `ulimit -n 128`, 300 connections stuck in
# their headers leave /health answering and the CPU idle; the port in use is one line. The server is stopped by a
# trap whatever happens. Prints "N passed, N failed" and exits non-zero on any failure.
#
#   scripts/serve-test.sh               needs curl, python3 with openai + websocket-client, chromium
#   SERVE_TEST_OUT=DIR                  where the screenshot and logs go (default .build/serve-test)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${SERVE_TEST_OUT:-$ROOT/.build/serve-test}
mkdir -p "$OUT"
swift build
BIN=$(swift build --show-bin-path)/charrnn
WORK=$(mktemp -d /tmp/charrnn-serve-test.XXXXXX)
SERVER=""
BACKGROUND=()

cleanup() {
    for p in "${BACKGROUND[@]+"${BACKGROUND[@]}"}"; do kill "$p" 2>/dev/null || true; done
    if [ -n "$SERVER" ] && kill -0 "$SERVER" 2>/dev/null; then kill -TERM "$SERVER"; sleep 1; kill -KILL "$SERVER" 2>/dev/null || true; fi
    [ -f "$WORK/server.log" ] && cp "$WORK/server.log" "$OUT/server.log"
    rm -rf "$WORK"
}
trap cleanup EXIT

PASS=0; FAIL=0
ok()   { PASS=$((PASS + 1)); echo "ok   $*"; }
bad()  { FAIL=$((FAIL + 1)); echo "FAIL $*"; }
expect() { if [ "$1" = "$2" ]; then ok "$3"; else bad "$3: expected [$2], got [$1]"; fi; }
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))" "$1"; }
CURL=(curl -sS --max-time 20)

# ---- a tiny checkpoint
python3 - "$WORK/corpus.txt" <<'EOF'
import random, sys
random.seed(1)
words = "the quick brown fox jumps over a lazy dog and then she said hello world to everyone".split()
open(sys.argv[1], "w").write("\n".join(" ".join(random.choice(words) for _ in range(12)) for _ in range(400)) + "\n")
EOF
"$BIN" train "$WORK/corpus.txt" --hidden 48 --layers 2 --seq 20 --batch 10 --max-iters 200 --eval-every 100 \
    --out "$WORK/runs" --name tiny --threads 1 >/dev/null
CK=$WORK/runs/tiny

start_server() {   # start_server ARGS… : sets SERVER and PORT (FD_LIMIT=N: under `ulimit -n N`)
    if [ -n "${FD_LIMIT:-}" ]; then
        ( ulimit -n "$FD_LIMIT"; exec "$BIN" serve --checkpoint "$CK" --port 0 --threads 1 "$@" ) 2>"$WORK/server.log" &
    else
        "$BIN" serve --checkpoint "$CK" --port 0 --threads 1 "$@" 2>"$WORK/server.log" &
    fi
    SERVER=$!
    for _ in $(seq 1 300); do
        PORT=$(grep -o '127\.0\.0\.1:[0-9]*' "$WORK/server.log" 2>/dev/null | head -1 | cut -d: -f2 || true)
        [ -n "$PORT" ] && break
        kill -0 "$SERVER" 2>/dev/null || { cat "$WORK/server.log"; echo "server died"; exit 1; }
        sleep 0.1
    done
    [ -n "$PORT" ] || { echo "server did not start"; exit 1; }
    URL=http://127.0.0.1:$PORT
}

# Paced at 4 ms per step so streams last long enough to watch, cancel and queue behind.
start_server --max-streams 4 --max-queue 2 --max-tokens 4096 --max-prompt 4096 --max-body 65536 \
    --step-interval-ms 4 --shutdown-grace 3 --idle-timeout 5
echo "server on $URL"

# ---- health, models
H=$("${CURL[@]}" "$URL/health")
expect "$(echo "$H" | json 'd["status"], d["max_streams"]')" "('ok', 4)" "GET /health"
M=$("${CURL[@]}" "$URL/v1/models")
expect "$(echo "$M" | json 'd["data"][0]["id"], d["data"][0]["charrnn_version"], d["data"][0]["charrnn"]["hidden"]')" \
    "('tiny', '$("$BIN" --version)', 48)" "GET /v1/models: id, version, info"

# ---- completions = charrnn sample
SAMPLE=$("$BIN" sample --checkpoint "$CK" --prime "the " --seed 7 --length 60 --temp 0.8)
EXPECTED=${SAMPLE#the }
R=$("${CURL[@]}" "$URL/v1/completions" -H 'Content-Type: application/json' \
    -d '{"model":"tiny","prompt":"the ","max_tokens":60,"temperature":0.8,"seed":7}')
expect "$(echo "$R" | json 'd["choices"][0]["text"]')" "$EXPECTED" "POST /v1/completions = charrnn sample --prime --seed"
expect "$(echo "$R" | json 'd["object"], d["choices"][0]["finish_reason"], d["usage"]["prompt_tokens"], d["usage"]["completion_tokens"]')" \
    "('text_completion', 'length', 4, 60)" "completion shape and usage"
SAMPLE3=$("$BIN" sample --checkpoint "$CK" --seed 11 --length 40 --temp 1 --top-k 5 --num-samples 3 --output-dir "$WORK/s3" 2>/dev/null; \
          python3 -c "import sys; print(repr([open(f'$WORK/s3/sample-{i}.txt').read() for i in (1,2,3)]))")
R=$("${CURL[@]}" "$URL/v1/completions" -d '{"prompt":"","max_tokens":40,"temperature":1,"top_k":5,"seed":11,"n":3}')
expect "$(echo "$R" | json 'repr([c["text"] for c in d["choices"]])')" "$SAMPLE3" "n=3 = sample --num-samples 3"
STOPPED=$("$BIN" sample --checkpoint "$CK" --prime "the " --seed 7 --length 60 --temp 0.8 --stop "o" --stop "xq")
R=$("${CURL[@]}" "$URL/v1/completions" -d '{"prompt":"the ","max_tokens":60,"temperature":0.8,"seed":7,"stop":["o","xq"]}')
expect "$(echo "$R" | json 'd["choices"][0]["text"], d["choices"][0]["finish_reason"]')" \
    "$(python3 -c "import sys; print((sys.argv[1], 'stop'))" "${STOPPED#the }")" "stop = sample --stop, finish_reason stop"

# ---- penalties and logit_bias = charrnn sample with the same flags (the newline banned by character)
PEN=$("$BIN" sample --checkpoint "$CK" --prime "the " --seed 7 --length 120 --temp 0.8 --frequency-penalty 0.5 --presence-penalty 0.3 \
      --repetition-penalty 1.3 --repeat-window 16 --logit-bias $'\n=-100' --logit-bias 'e=2')
R=$("${CURL[@]}" "$URL/v1/completions" -d '{"prompt":"the ","max_tokens":120,"temperature":0.8,"seed":7,"frequency_penalty":0.5,"presence_penalty":0.3,"repetition_penalty":1.3,"repeat_window":16,"logit_bias":{"\n":-100,"e":2}}')
expect "$(echo "$R" | json 'd["choices"][0]["text"]')" "${PEN#the }" "penalties + logit_bias = sample --frequency-penalty … --logit-bias"
expect "$(echo "$R" | json '"\n" in d["choices"][0]["text"], len(d["choices"][0]["text"])')" "(False, 120)" "logit_bias -100 bans the newline"
[ "${PEN#the }" != "$EXPECTED" ] && ok "penalties change the text" || bad "penalties did not change the text"

# ---- streaming
S=$("${CURL[@]}" -N -D "$WORK/stream.h" "$URL/v1/completions" -d '{"prompt":"the ","max_tokens":60,"temperature":0.8,"seed":7,"stream":true}')
grep -qi '^content-type: text/event-stream' "$WORK/stream.h" && ok "stream: text/event-stream" || bad "stream: content type"
expect "$(echo "$S" | tail -n 1)" "data: [DONE]" "stream ends with data: [DONE]"
expect "$(echo "$S" | python3 -c '
import json, sys
ev = [l[6:] for l in sys.stdin.read().split("\n") if l.startswith("data: ") and l != "data: [DONE]"]
ch = [json.loads(e) for e in ev]
print("".join(c["choices"][0]["text"] for c in ch if c["choices"]), len(ch) > 5, [c["choices"][0]["finish_reason"] for c in ch if c["choices"]][-1])')" \
    "$EXPECTED True length" "stream: many events, same text as non-streaming, finish_reason"

# ---- score = charrnn eval
printf 'the quick brown fox' > "$WORK/score.txt"
EV=$("$BIN" eval "$WORK/score.txt" --checkpoint "$CK" --json | json 'd["tokens"], d["unknown"], d["scored"], d["loss"], d["bpc"]')
SC=$("${CURL[@]}" "$URL/v1/score" -d '{"input":["the quick brown fox"]}' | \
     json '(lambda e: (e["tokens"], e["unknown"], e["scored"], e["nats_per_token"], e["bits_per_character"]))(d["data"][0])')
expect "$SC" "$EV" "POST /v1/score = charrnn eval --json"

# ---- error classes: status, OpenAI error object, param
err() {   # err NAME STATUS PARAM CURL-ARGS… : the status and the error object's param
    local name=$1 want=$2 param=$3; shift 3
    local code body
    code=$("${CURL[@]}" -o "$WORK/err.json" -w '%{http_code}' "$@" || true)
    body=$(cat "$WORK/err.json" 2>/dev/null || true)
    local got
    got=$(echo "$body" | python3 -c 'import json,sys
try:
    e = json.load(sys.stdin)["error"]; print(e["type"] and e["message"] and "obj", e["param"])
except Exception as x: print("no-error-object", x)' 2>/dev/null)
    expect "$code $got" "$want obj $param" "$name"
}
C=("$URL/v1/completions" -H 'Content-Type: application/json')
err "malformed JSON → 400" 400 None "${C[@]}" -d '{"prompt": "a",'
err "top level not an object → 400" 400 None "${C[@]}" -d '[1,2]'
err "wrong type (prompt number) → 400" 400 prompt "${C[@]}" -d '{"prompt": 5}'
err "wrong type (max_tokens string) → 400" 400 max_tokens "${C[@]}" -d '{"max_tokens": "5"}'
err "wrong type (stream) → 400" 400 stream "${C[@]}" -d '{"stream": "yes"}'
err "NaN → 400" 400 temperature "${C[@]}" -d '{"temperature": NaN}'
err "huge number (1e999) → 400" 400 temperature "${C[@]}" -d '{"temperature": 1e999}'
err "lone surrogate in the prompt → 400" 400 prompt "${C[@]}" -d '{"prompt": "a\ud800"}'
err "JSON nested 65 deep → 400" 400 x "${C[@]}" -d "{\"x\": $(printf '[%.0s' $(seq 64))$(printf ']%.0s' $(seq 64))}"
err "a key twice → 400" 400 n "${C[@]}" -d '{"n": 1, "n": 2}'
err "huge integer → 400" 400 max_tokens "${C[@]}" -d '{"max_tokens": 123456789012345678901234567890}'
err "negative max_tokens → 400" 400 max_tokens "${C[@]}" -d '{"max_tokens": -1}'
err "max_tokens over the cap → 400" 400 max_tokens "${C[@]}" -d '{"max_tokens": 4097}'
err "negative temperature → 400" 400 temperature "${C[@]}" -d '{"temperature": -1}'
err "top_p 0 → 400" 400 top_p "${C[@]}" -d '{"top_p": 0}'
err "n over the limit → 400" 400 n "${C[@]}" -d '{"n": 99}'
err "five stop strings → 400" 400 stop "${C[@]}" -d '{"stop": ["a","b","c","d","e"]}'
err "prompt only of unknown characters → 400" 400 prompt "${C[@]}" -d '{"prompt": "ZZZ"}'
printf '{"prompt": "\xff\xfe"}' > "$WORK/bad-utf8.json"
err "invalid UTF-8 body → 400" 400 None "${C[@]}" --data-binary @"$WORK/bad-utf8.json"
python3 -c "print('{\"prompt\": \"' + 'a' * 5000 + '\"}')" > "$WORK/long-prompt.json"
err "prompt over --max-prompt → 400" 400 prompt "${C[@]}" --data-binary @"$WORK/long-prompt.json"
python3 -c "print('{\"prompt\": \"' + 'a' * (10 << 20) + '\"}')" > "$WORK/10mb.json"
code=$("${CURL[@]}" -o /dev/null -w '%{http_code}' "${C[@]}" --data-binary @"$WORK/10mb.json" 2>/dev/null || true)
case "$code" in 413|000) ok "10 MB prompt → 413 or closed ($code)";; *) bad "10 MB prompt: $code";; esac
err "10 MB prompt, chunked (no Content-Length) → 413" 413 None "${C[@]}" -H 'Transfer-Encoding: chunked' --data-binary @"$WORK/10mb.json"
err "frequency_penalty out of range → 400" 400 frequency_penalty "${C[@]}" -d '{"frequency_penalty": 2.5}'
err "presence_penalty not a number → 400" 400 presence_penalty "${C[@]}" -d '{"presence_penalty": "1"}'
err "repetition_penalty 0 → 400" 400 repetition_penalty "${C[@]}" -d '{"repetition_penalty": 0}'
err "repeat_window negative → 400" 400 repeat_window "${C[@]}" -d '{"repeat_window": -1}'
err "logit_bias key not in the vocabulary → 400" 400 logit_bias "${C[@]}" -d '{"prompt": "a", "logit_bias": {"Q": 1}}'
err "logit_bias value out of range → 400" 400 logit_bias "${C[@]}" -d '{"logit_bias": {"a": -101}}'
python3 -c "import json, sys; print(json.dumps({'logit_bias': {c: -100 for c in set(open(sys.argv[1]).read())}}))" "$WORK/corpus.txt" > "$WORK/ban-all.json"
err "logit_bias banning every character → 400" 400 logit_bias "${C[@]}" --data-binary @"$WORK/ban-all.json"
err "unknown model → 404" 404 model "${C[@]}" -d '{"model": "gpt-4", "prompt": "a"}'
err "unknown route → 404" 404 None "$URL/v2/nothing"
err "score without input → 400" 400 input "$URL/v1/score" -d '{}'
code=$("${CURL[@]}" -o /dev/null -w '%{http_code}' "${C[@]}" -d '{"prompt":"a","max_tokens":3,"user":"u","frequency_penalty":0,"logit_bias":{},"extra":[1,{"x":null}]}')
expect "$code" "200" "unknown fields are ignored"
code=$("${CURL[@]}" -o /dev/null -w '%{http_code}' -X GET "$URL/v1/completions" || true)
case "$code" in 404|405) ok "GET on a POST route → $code";; *) bad "GET on a POST route: $code";; esac

# ---- limits: 4 streams busy + 2 queued, the next one → 429 with Retry-After; dropped clients free their rows
for i in 1 2 3 4 5 6; do
    curl -sS -N --max-time 30 "$URL/v1/completions" -d '{"prompt":"the ","max_tokens":4000,"stream":true}' >/dev/null 2>&1 &
    BACKGROUND+=($!)
done
sleep 1
expect "$("${CURL[@]}" "$URL/health" | json 'd["active_streams"], d["queued"]')" "(4, 2)" "4 streams run, 2 wait"
code=$("${CURL[@]}" -D "$WORK/429.h" -o "$WORK/err.json" -w '%{http_code}' "$URL/v1/completions" -d '{"prompt":"a","max_tokens":5}')
expect "$code $(grep -i '^retry-after:' "$WORK/429.h" | tr -d '\r' | cut -d' ' -f2) $(json 'd["error"]["type"]' < "$WORK/err.json")" \
    "429 1 rate_limit_error" "queue full → 429 with Retry-After"
for p in "${BACKGROUND[@]}"; do kill "$p" 2>/dev/null || true; done
BACKGROUND=()
freed=no
for _ in $(seq 1 50); do
    [ "$("${CURL[@]}" "$URL/health" | json 'd["active_streams"] + d["queued"]')" = "0" ] && { freed=yes; break; }
    sleep 0.1
done
expect "$freed" yes "dropped streaming clients free their rows"

# ---- a client that goes away frees its row within a step, streaming or not (close, reset, half-close)
lines_before=$(grep -c ' POST /v1/completions ' "$WORK/server.log" || true)
python3 scripts/serve-test/clients.py disconnect "$PORT" && ok "disconnected clients (non-streaming and streaming) free their rows at once" \
    || bad "disconnected clients keep their rows"
sleep 0.5
lines=$(( $(grep -c ' POST /v1/completions ' "$WORK/server.log" || true) - lines_before ))
gone=$(grep -c 'client-gone' "$WORK/server.log" || true)
expect "$lines $([ "$gone" -ge 2 ] && echo yes)" "6 yes" "all 6 requests whose client went away are in the access log ($gone marked client-gone)"

# ---- HTTP/1.0, Expect: 100-continue, malformed chunks, HEAD, 405, favicon, deep JSON, lone surrogates
python3 scripts/serve-test/clients.py http "$PORT" && ok "HTTP conformance cases" || bad "HTTP conformance cases"

# ---- hostile connections, then a normal request still works
python3 scripts/serve-test/clients.py connections "$PORT" 1500 && ok "1500 connections opened and dropped" || bad "connection burst"
expect "$("${CURL[@]}" "$URL/v1/completions" -d '{"prompt":"the ","max_tokens":60,"temperature":0.8,"seed":7}' | json 'd["choices"][0]["text"]')" \
    "$EXPECTED" "after the hostile input the server still answers, the same text"

python3 scripts/serve-test/clients.py timeouts "$PORT" 5 && ok "idle, header-read and body-read timeouts close connections" || bad "timeouts"

# ---- the openai package
python3 scripts/serve-test/clients.py openai "$PORT" tiny "$EXPECTED" && ok "openai client" || bad "openai client"
# logprobs, echo (scoring = charrnn eval --batch 1), best_of, streaming and not
printf 'the quick brown fox' > "$WORK/echo.txt"
EVAL_TOTAL=$("$BIN" eval "$WORK/echo.txt" --checkpoint "$CK" --batch 1 --json | json '-d["loss"] * d["scored"]')
python3 scripts/serve-test/clients.py logprobs "$PORT" tiny "$EVAL_TOTAL" && ok "openai client: logprobs, echo, best_of" || bad "openai client: logprobs, echo, best_of"
python3 scripts/serve-test/clients.py penalties "$PORT" tiny "${PEN#the }" && ok "openai client: penalties and logit_bias" \
    || bad "openai client: penalties and logit_bias"

# ---- the web page in headless Chromium
P=$("${CURL[@]}" "$URL/")
if echo "$P" | grep -q '<textarea id="prompt"' && ! echo "$P" | grep -Eq '(src|href)="(https?:)?//'; then ok "GET / is a self-contained page"; else bad "GET / page"; fi
timeout 120 python3 scripts/serve-test/browser.py "$PORT" "$OUT/page.png" && ok "web page in headless Chromium (screenshot $OUT/page.png)" || bad "web page in Chromium"

# ---- SIGTERM during a stream: ends within the grace time, exit status 0
curl -sS -N --max-time 30 "$URL/v1/completions" -d '{"prompt":"the ","max_tokens":4000,"stream":true}' > "$WORK/cut.txt" 2>/dev/null &
cut_client=$!
BACKGROUND+=($cut_client)
# SIGTERM once the stream is flowing (a fixed sleep raced a loaded machine's slow start)
for _ in $(seq 100); do [ -s "$WORK/cut.txt" ] && break; sleep 0.1; done
t0=$(date +%s.%N)
kill -TERM "$SERVER"
status=0; wait "$SERVER" || status=$?
t1=$(date +%s.%N)
SERVER=""
took=$(python3 -c "print(round($t1 - $t0, 1))")
expect "$status $(python3 -c "print($took < 10)")" "0 True" "SIGTERM: exit 0 within grace + 7 s (took ${took} s)"
for _ in $(seq 50); do kill -0 "$cut_client" 2>/dev/null || break; sleep 0.1; done   # the client has read the end
expect "$(tail -n 2 "$WORK/cut.txt" | head -n 1)" "data: [DONE]" "the cut stream still ends with [DONE]"
grep -q "charrnn serve: stopped" "$WORK/server.log" && ok "server says stopped" || bad "no stop message"
lines=$(grep -c ' POST /v1/completions ' "$WORK/server.log" || true)
[ "$lines" -gt 20 ] && ok "one log line per request ($lines completions lines)" || bad "log lines: $lines"

# ---- no memory growth: RSS after 100 requests = RSS after 10,000 more (an unpaced server)
start_server --max-streams 8
python3 scripts/serve-test/clients.py rss "$PORT" "$SERVER" 10000 && ok "no RSS growth over 10,000 requests" || bad "RSS growth"
kill -TERM "$SERVER"; wait "$SERVER" || true; SERVER=""

# ---- near the descriptor limit: 300 connections stuck in their headers against a limit of 128
FD_LIMIT=128 start_server --idle-timeout 60
python3 scripts/serve-test/clients.py fdlimit "$PORT" "$SERVER" 300 && ok "descriptor limit: reachable, no spinning" || bad "descriptor limit"
kill -TERM "$SERVER"; wait "$SERVER" || true; SERVER=""

# ---- --weights bf16: a completion = charrnn sample --weights bf16 (same kernel, same bits); TMPDIR
# unwritable changes nothing (scoring is in memory)
TMPDIR=/nonexistent/charrnn start_server --weights bf16 --max-body 2048 --step-interval-ms 4
SAMPLE=$("$BIN" sample --checkpoint "$CK" --prime "the " --seed 7 --length 60 --temp 0.8 --weights bf16)
R=$("${CURL[@]}" "$URL/v1/completions" -H 'Content-Type: application/json' \
    -d '{"prompt":"the ","max_tokens":60,"temperature":0.8,"seed":7}')
expect "$(echo "$R" | json 'd["choices"][0]["text"]')" "${SAMPLE#the }" "serve --weights bf16 = sample --weights bf16"
expect "$("${CURL[@]}" "$URL/v1/score" -d '{"input":"the quick brown fox"}' | json 'd["data"][0]["scored"]')" "18" \
    "score with TMPDIR unwritable (in memory), --max-body 2048 alone accepted"
# the port in use: one line saying so
"$BIN" serve --checkpoint "$CK" --port "$PORT" --threads 1 2>"$WORK/inuse.log" && status=0 || status=$?
expect "$status $(wc -l < "$WORK/inuse.log") $(grep -c "port $PORT is in use" "$WORK/inuse.log")" "1 1 1" "port in use: one line ($(cat "$WORK/inuse.log"))"
# a second SIGTERM quits at once while the first waits for a stream's grace time
curl -sS -N --max-time 30 "$URL/v1/completions" -d '{"prompt":"the ","max_tokens":4000,"stream":true}' > "$WORK/cut2.txt" 2>/dev/null &
BACKGROUND+=($!)
for _ in $(seq 100); do [ -s "$WORK/cut2.txt" ] && break; sleep 0.1; done
kill -TERM "$SERVER"; sleep 0.3; kill -TERM "$SERVER"
t0=$(date +%s.%N)
status=0; wait "$SERVER" || status=$?
t1=$(date +%s.%N)
SERVER=""
expect "$status $(python3 -c "print($t1 - $t0 < 2)")" "143 True" "second SIGTERM: exit 143 at once"

echo
echo "serve-test: $PASS passed, $FAIL failed"
[ "$FAIL" -eq 0 ]
