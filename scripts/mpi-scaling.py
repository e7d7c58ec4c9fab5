#!/usr/bin/env python3
"""Scaling on paper: projected data-parallel efficiency of `mpirun -np N charrnn train` on N hosts.

Per iteration every host computes its block of the B streams (the global minibatch is fixed, so
compute per host is t1/N — strong scaling) and then sums the gradients in rank order
(Distributed/Reducers.swift): an Alltoall and an Allgather of c = ceil(P/N) floats per rank, i.e.
2·(N−1)·c·4 bytes sent and received by each host, in 2·(N−1) point-to-point messages at worst.
    t_comm(N) = 2·(N−1)·c·4 / bandwidth + 2·(N−1)·latency
    efficiency(N) = (t1/N) / (t1/N + t_comm(N))
t1 is the measured compute per iteration of one host (ms, e.g. `charrnn bench … --json`'s
msPerIterMedian on one process with all its cores) and P the parameter count (bench prints it).
The model assumes no overlap of communication with compute (charrnn sums after backward) and that
t1/N holds (with very few streams per host the GEMMs get less efficient: a ceiling, not a floor).

    python3 scripts/mpi-scaling.py --params 3500000 --ms-iter 560
    python3 scripts/mpi-scaling.py --bench bench.json      # from `charrnn bench --json`
"""
import argparse, json

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--params", type=int, help="parameter count P")
p.add_argument("--ms-iter", type=float, help="compute per iteration on one host, ms")
p.add_argument("--bench", help="JSON of `charrnn bench --json` on one host (params, msPerIterMedian)")
p.add_argument("--gbps", type=float, default=10.0, help="link speed, Gbit/s (default 10 GbE)")
p.add_argument("--efficiency-of-link", type=float, default=0.9, help="share of the line rate TCP achieves (default 0.9)")
p.add_argument("--latency-us", type=float, default=50.0, help="per-message latency, µs (default 50)")
p.add_argument("--hosts", default="2,4,8,16")
a = p.parse_args()
if a.bench:
    b = json.load(open(a.bench))
    a.params = a.params or b["params"]; a.ms_iter = a.ms_iter or b["msPerIterMedian"]
if not a.params or not a.ms_iter:
    p.error("give --params and --ms-iter, or --bench")
bw = a.gbps * 1e9 / 8 * a.efficiency_of_link
print(f"P = {a.params} parameters, compute {a.ms_iter:.1f} ms/iteration on one host, "
      f"{a.gbps:g} Gbit/s × {a.efficiency_of_link:g}, {a.latency_us:g} µs/message")
print(f"| hosts | MB sent per host per iteration | compute ms | communication ms | efficiency | speed-up |")
print(f"|------:|------:|------:|------:|------:|------:|")
for n in [int(x) for x in a.hosts.split(",")]:
    c = -(-a.params // n)
    nbytes = 2 * (n - 1) * c * 4
    comm = nbytes / bw * 1e3 + 2 * (n - 1) * a.latency_us / 1e3
    comp = a.ms_iter / n
    eff = comp / (comp + comm)
    print(f"| {n} | {nbytes / 1e6:.2f} | {comp:.1f} | {comm:.2f} | {eff:.0%} | {n * eff:.1f}× |")
