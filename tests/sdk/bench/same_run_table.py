"""One table from a same-run directory (tests/sdk/bench/same-run.sh): Keel and Restate per
row, median [min..max] over rounds, and Keel / Restate of the medians.

Usage: python3 same_run_table.py DIR
"""
import glob
import json
import os
import statistics
import sys


def lines(pattern):
    for path in sorted(glob.glob(pattern)):
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line.startswith("{"):
                    yield json.loads(line)


def cell(values, digits=1):
    if not values:
        return "–", None
    m = statistics.median(values)
    if len(values) == 1:
        return f"{m:.{digits}f}", m
    return f"{m:.{digits}f} [{min(values):.{digits}f}..{max(values):.{digits}f}]", m


def ratio(k, r):
    return f"{k / r:.2f}" if k is not None and r not in (None, 0) else "–"


def main(d):
    keel = list(lines(os.path.join(d, "keel-r*.jsonl")))
    restate = list(lines(os.path.join(d, "restate-r*/results.jsonl")))
    warmup = 3
    for meta in glob.glob(os.path.join(d, "restate-r*/meta.json")):
        with open(meta) as f:
            warmup = json.load(f).get("warmup_s", warmup)
    rows = []

    def add(name, kv, rv, digits=1):
        ks, km = cell(kv, digits)
        rs, rm = cell(rv, digits)
        rows.append((name, ks, rs, ratio(km, rm)))

    cs = sorted({r["concurrency"] for r in keel if r["workload"] in ("W1", "W1L")})
    r_w1 = [r for r in restate if r["workload"] == "W1"]
    for c in cs:
        rr = [r for r in r_w1 if r["result"]["concurrency"] == c]
        for w in ("W1", "W1L"):
            kk = [r for r in keel if r["workload"] == w and r["concurrency"] == c]
            if not kk:
                continue
            add(f"{w} workflows/s, C = {c} (Restate: W1)", [r["workflows_per_sec"] for r in kk],
                [r["result"]["throughput_per_s"] for r in rr])
            add(f"{w} p50 ms, C = {c}", [r["p50_ms"] for r in kk], [r["result"]["p50_ms"] for r in rr])
            add(f"{w} p99 ms, C = {c}", [r["p99_ms"] for r in kk], [r["result"]["p99_ms"] for r in rr])
            # Restate's CPU covers warm-up + window; its completed count covers the window.
            add(f"{w} server CPU ms / workflow, C = {c}",
                [r["server_cpu_ms_per_wf"] for r in kk],
                [1e3 * r["server_cpu_s"] / (r["result"]["throughput_per_s"]
                                            * (r["result"]["duration_s"] + warmup))
                 for r in rr if r["result"]["throughput_per_s"] > 0])
            add(f"{w} server RSS MiB, C = {c}", [r["server_rss_mib"] for r in kk],
                [r["server_rss_kib"] / 1024 for r in rr], 0)
    k_w2 = [r for r in keel if r["workload"] == "W2"]
    r_w2 = [r for r in restate if r["workload"] == "W2"]
    if k_w2 or r_w2:
        add("W2 all done s", [r["all_done_secs"] for r in k_w2], [r["result"]["all_done_s"] for r in r_w2])
        add("W2 lateness p50 ms", [r["lateness_p50_ms"] for r in k_w2],
            [r["result"]["lateness_p50_ms"] for r in r_w2], 0)
        add("W2 lateness p99 ms", [r["lateness_p99_ms"] for r in k_w2],
            [r["result"]["lateness_p99_ms"] for r in r_w2], 0)
        add("W2 server RSS MiB", [r["server_rss_mib"] for r in k_w2],
            [r["server_rss_kib"] / 1024 for r in r_w2], 0)
    nodes = sorted({r["nodes"] for r in keel}) or ["?"]
    commit = open(os.path.join(d, "keel-commit")).read().strip() if os.path.exists(
        os.path.join(d, "keel-commit")) else "?"
    print(f"Same run, {os.path.basename(d)}: Keel {commit} on {nodes[0]} node(s), Restate 1.7.12; "
          f"{len(k_w2) or len(keel)} Keel round(s), {len(r_w2) or len(restate)} Restate round(s); "
          "median [min..max] over rounds.\n")
    print("| row | Keel | Restate | Keel ÷ Restate |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} |")


if __name__ == "__main__":
    main(sys.argv[1])
