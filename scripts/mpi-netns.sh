#!/usr/bin/env bash
# Two "hosts" for real MPI over TCP: network namespaces joined by a veth pair, one rank in each.
#   host A: namespace charrnn-a-PID, 10.231.77.1/24     host B: namespace charrnn-b-PID, 10.231.77.2/24
# The addresses exist only inside the namespaces (a private range on a link between them alone), so
# the traffic never leaves the pair. mpirun runs in A (rank 0 there); it starts B's daemon through an
# rsh agent that enters B (`ip netns exec`) instead of ssh, and rank 1 runs in B. Both see the same
# files (namespaces share the file system), as ranks on an NFS home would.
# Checks: the loss sequence equals the single-host 2-rank run's (bit for bit: same N, same threads);
# then B is "unplugged" (every process in it killed with -9) mid-run: the job ends within 30 s naming
# the rank, latest is intact, and the run resumes on the two hosts; then the link goes silent mid-run
# (both ends of the veth drop every packet: a `pfifo limit 0` qdisc, no reset, as a dead switch does;
# netem is not needed): charrnn's watchdog ends the job within 30 s with rank 0's line naming rank 1
# (the default limit; --short sets CHARRNN_MPI_TIMEOUT=5 to save CI time), latest is intact, and the
# run resumes on the two hosts once the link is back.
#   sudo bash scripts/mpi-netns.sh [--short] [BIN]     (root: namespaces; --short is the CI version)
set -euo pipefail
cd "$(dirname "$0")/.."
short=0; [ "${1:-}" = --short ] && { short=1; shift; }
BIN=${1:-$(swift build --show-bin-path)/charrnn}
BIN=$(readlink -f "$BIN")
CORPUS=$(readlink -f "${CORPUS:-../shared/data/tinyshakespeare.txt}")
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
A=charrnn-a-$$ B=charrnn-b-$$ IPA=10.231.77.1 IPB=10.231.77.2
work=$(mktemp -d)
cleanup() {
  for ns in "$A" "$B"; do
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
    ip netns delete "$ns" 2>/dev/null || true      # takes its end of the veth pair with it
  done
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }

ip netns add "$A"; ip netns add "$B"
ip link add "va$$" type veth peer name "vb$$"
ip link set "va$$" netns "$A"; ip link set "vb$$" netns "$B"
ip -n "$A" addr add "$IPA/24" dev "va$$"; ip -n "$B" addr add "$IPB/24" dev "vb$$"
for ns in "$A" "$B"; do ip -n "$ns" link set lo up; done
ip -n "$A" link set "va$$" up; ip -n "$B" link set "vb$$" up
ip netns exec "$A" bash -c "(exec 3<>/dev/tcp/$IPB/9) 2>/dev/null; exit 0"   # warm the neighbour entry (no ping needed)

# the rsh agent: `agent HOST COMMAND…` runs COMMAND in HOST's namespace (mpirun's ssh stand-in)
cat >"$work/agent" <<AGENT
#!/bin/sh
host=\$1; shift
case "\$host" in $IPA) ns=$A ;; $IPB) ns=$B ;; *) echo "agent: unknown host \$host" >&2; exit 1 ;; esac
exec ip netns exec "\$ns" sh -c "\$*"
AGENT
chmod +x "$work/agent"
printf '%s slots=1\n%s slots=1\n' "$IPA" "$IPB" >"$work/hostfile"
# --bind-to none: each "host" would bind its one rank to core 0, and both are this machine's core 0
NET=(--mca plm_rsh_agent "$work/agent" --mca plm_rsh_no_tree_spawn 1 --hostfile "$work/hostfile" --bind-to none
     --mca btl self,tcp --mca btl_tcp_if_include 10.231.77.0/24 --mca oob_tcp_if_include 10.231.77.0/24
     -x OMPI_ALLOW_RUN_AS_ROOT -x OMPI_ALLOW_RUN_AS_ROOT_CONFIRM)
LOCAL=(--oversubscribe --mca btl self,tcp --mca btl_tcp_if_include lo --mca oob_tcp_if_include lo)
iters=$([ $short = 1 ] && echo 20 || echo 100)
F=("$CORPUS" --hidden 64 --layers 2 --seq 20 --batch 10 --eval-every 10 --threads 1 --no-cache --out "$work")
cols() { awk -F, 'NR>1{print $1, $3, ($4 == "" ? "-" : $4)}' "$1/loss.csv"; }

echo "1. two namespace hosts vs one host, 2 ranks, $iters iterations"
mpirun "${LOCAL[@]}" -np 2 "$BIN" train "${F[@]}" --max-iters "$iters" --name local >/dev/null 2>&1
ip netns exec "$A" mpirun "${NET[@]}" -np 2 "$BIN" train "${F[@]}" --max-iters "$iters" --name hosts >"$work/hosts.log" 2>&1 \
  || { cat "$work/hosts.log"; fail "the two-host run failed"; }
ip netns exec "$A" mpirun "${NET[@]}" -np 2 hostname -I | sort | tr '\n' ' ' | sed 's/^/  ranks ran on: /'; echo
cmp <(cols "$work/local") <(cols "$work/hosts") || fail "the loss sequences differ"
echo "  same loss sequence ($(cols "$work/hosts" | wc -l) rows)"

# start_long NAME MPIRUN_ARGS…: a long two-host run in the background ($job), once it has a checkpoint
start_long() {
    local name=$1; shift
    ip netns exec "$A" mpirun "$@" -np 2 "$BIN" train "${F[@]}" --max-iters 100000 --eval-every 20 --name "$name" >"$work/$name.log" 2>&1 &
    job=$!
    for _ in $(seq 200); do [ -s "$work/$name/latest.safetensors" ] && break; sleep 0.2; done
    [ -s "$work/$name/latest.safetensors" ] || { cat "$work/$name.log"; fail "no checkpoint before the fault ($name)"; }
    sleep 1
}

# end_within_30s WHAT: the background job ($job) must end within 30 s of the fault
end_within_30s() {
    for _ in $(seq 300); do kill -0 "$job" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$job" 2>/dev/null && { kill -9 "$job"; fail "the job still runs 30 s after $1"; }
    wait "$job" || true
}

# resume_on_hosts NAME: the run NAME resumes from its latest checkpoint on both hosts and runs 5 more
resume_on_hosts() {
    local it
    it=$(python3 -c 'import sys,struct,json; b=open(sys.argv[1],"rb").read(); n=struct.unpack("<Q",b[:8])[0]; print(json.loads(b[8:8+n])["__metadata__"]["iteration"])' "$work/$1/latest.safetensors")
    ip netns exec "$A" mpirun "${NET[@]}" -np 2 "$BIN" train --resume "$work/$1" --max-iters $((it + 5)) >"$work/$1-resume.log" 2>&1 \
      || { cat "$work/$1-resume.log"; fail "resume of $1 on the two hosts"; }
    grep -q "resuming .* at iteration $it " "$work/$1-resume.log" || fail "the resume of $1 did not start at $it"
    echo "  resumed on both hosts at iteration $it and ran to $((it + 5))"
}

echo "2. host B unplugged mid-run"
start_long cut "${NET[@]}"
t0=$(date +%s)
for p in $(ip netns pids "$B"); do kill -9 "$p" 2>/dev/null || true; done
end_within_30s "host B went away"
echo "  the job ended $(( $(date +%s) - t0 )) s after the cut; mpirun said:"
grep -m1 -A3 -E "lost communication|exited on signal" "$work/cut.log" | sed 's/^/    /' || true
resume_on_hosts cut

echo "3. the link goes silent mid-run (every packet dropped, no reset)"
timeout=$([ $short = 1 ] && echo 5 || echo "")
NETW=("${NET[@]}"); [ -n "$timeout" ] && NETW+=(-x CHARRNN_MPI_TIMEOUT="$timeout")
start_long mute "${NETW[@]}"
t0=$(date +%s)
ip netns exec "$A" tc qdisc add dev "va$$" root pfifo limit 0
ip netns exec "$B" tc qdisc add dev "vb$$" root pfifo limit 0
end_within_30s "the link went silent"
echo "  the job ended $(( $(date +%s) - t0 )) s after the link went silent; charrnn said:"
[ "$(grep -c '^rank 0: error: no reply from rank 1 for [0-9]* s in ' "$work/mute.log")" = 1 ] \
  || { cat "$work/mute.log"; fail "no single line from rank 0 naming rank 1"; }
grep '^rank 0: error: no reply' "$work/mute.log" | sed 's/^/    /'
ip netns exec "$A" tc qdisc del dev "va$$" root; ip netns exec "$B" tc qdisc del dev "vb$$" root
for p in $(ip netns pids "$B"); do kill -9 "$p" 2>/dev/null || true; done   # what is left of B's daemon and rank
resume_on_hosts mute
echo "mpi-netns: all passed"
