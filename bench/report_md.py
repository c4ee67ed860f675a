"""The markdown report of `make bench` (OUT_DIR/latest.md) from its results (the dict written to
latest.json): settings and machine, the latency table with ratios, PyTorch's configurations, the
percentiles of every run, and the wrk load test."""

import os

import intake_bench
from bench_util import PEERS, TORCH_CONFIGS, XNNPACK_MODELS, best_config

# Peers with an ours/peer ratio column, in this order.
RATIO_PEERS = ("onnxruntime", "pytorch", "xnnpack")


def fmt_ms(run, iters):
    """Median; '*' marks a run that the time cap stopped before `iters` passes; PyTorch's N-thread
    figure names its configuration."""
    if not run:
        return "–"
    config = " (%s)" % run["config"] if run.get("config") and run["threads"] > 1 else ""
    return "%.2f%s%s" % (run["median_ms"], "*" if run["iters"] < iters else "", config)


def fmt_loads(run):
    """The 1-minute load average before each round, e.g. "2.10 / 1.95"."""
    loads = [r.get("loadavg_before") for r in run.get("rounds", [])]
    return " / ".join("%.2f" % load[0] if load else "?" for load in loads) or "?"


def latency_tables(rows, threads, iters):
    names = dict(PEERS)
    head = ["model", "GMACs"] + ["%s %dT" % (names[p], t) for p, _ in PEERS for t in threads]
    head += ["ours/%s %dT" % (names[p], t) for p in RATIO_PEERS for t in threads]
    head += ["ours GFLOP/s %dT (of sgemm peak)" % t for t in threads]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row["model"], "%.3f" % (row["macs"] / 1e9) if "macs" in row else "–"]
        for peer, _ in PEERS:
            runs = row["peers"].get(peer)
            for t in threads:
                if not isinstance(runs, dict) or "error" in runs or "skipped" in runs:
                    cells.append("skipped" if isinstance(runs, dict) and "skipped" in runs else "n/a")
                else:
                    cells.append(fmt_ms(runs.get(t), iters))
        for peer in RATIO_PEERS:
            for t in threads:
                r = row["ratios"].get("ours/%s %dT" % (peer, t))
                cells.append("%.2f" % r if r is not None else "–")
        ours = row["peers"]["ours"]
        for t in threads:
            o = ours.get(t) if "error" not in ours else None
            cells.append("%.1f (%.0f%%)" % (o["gflops"], 100 * o["peak_ratio"]) if o else "–")
        lines.append("| " + " | ".join(cells) + " |")
    detail = ["| model | peer | threads | passes | median ms | p90 ms | p99 ms | min ms | round medians ms "
              "| load (1 min) per round |", "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        for peer, label in PEERS:
            runs = row["peers"].get(peer)
            if not isinstance(runs, dict) or "error" in runs or "skipped" in runs:
                continue
            for t in threads:
                r = runs.get(t)
                if r:
                    detail.append("| %s | %s | %d | %d | %.3f | %.3f | %.3f | %.3f | %s | %s |" % (
                        row["model"], label + (" (%s)" % r["config"] if r.get("config") and t > 1 else ""), t,
                        r["iters"], r["median_ms"], r["p90_ms"], r["p99_ms"], r["min_ms"],
                        " / ".join("%.3f" % x["median_ms"] for x in r.get("rounds", [])), fmt_loads(r)))
    return lines, detail


def p10_ratio_table(rows, threads):
    """ours/peer at the 10 % quantile of the pooled passes: on a machine whose speed drifts for minutes
    at a time, the ratio of the fast stretches (the medians mix in however many slow ones a run met)."""
    names = dict(PEERS)
    head = ["model"] + ["ours/%s %dT" % (names[p], t) for p in RATIO_PEERS for t in threads]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        ratios = row.get("ratios_p10", {})
        cells = [row["model"]]
        for peer in RATIO_PEERS:
            for t in threads:
                r = ratios.get("ours/%s %dT" % (peer, t))
                cells.append("%.2f" % r if r is not None else "–")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def torch_config_table(rows, threads):
    """Every PyTorch configuration at N > 1 threads: median (p90, passes) over the pooled rounds; the
    fastest median, the one reported above, in bold."""
    multi = [t for t in threads if t > 1]
    configs = [name for name, _, _ in TORCH_CONFIGS]
    lines = ["| model | threads | " + " | ".join("%s median ms (p90, passes)" % c for c in configs) + " |",
             "|" + "---|" * (2 + len(configs))]
    for row in rows:
        for t in multi:
            by_config = (row.get("pytorch_configs") or {}).get(t)
            if not by_config:
                continue
            best = best_config(by_config)
            cells = []
            for c in configs:
                r = by_config.get(c)
                if r is None:
                    cells.append("–")
                elif "median_ms" not in r:
                    cells.append("error")
                else:
                    cell = "%.2f (%.2f, %d)" % (r["median_ms"], r["p90_ms"], r["iters"])
                    cells.append("**%s**" % cell if c == best else cell)
            lines.append("| %s | %d | %s |" % (row["model"], t, " | ".join(cells)))
    return lines if len(lines) > 2 else []


def wrk_table(cases):
    head = ["model", "image (decode scale)", "conns", "req/s", "x 1-conn", "p50 ms", "p99 ms", "non-2xx", "socket errors",
            "decode", "preprocess", "queue", "inference", "server total"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    base = {}
    for c in cases:
        if "wrk" not in c:
            lines.append("| %s | %s | %d | %s |" % (c["model"], c["image"], c["connections"], c.get("error")) +
                         " |" * (len(head) - 4))
            continue
        w = c["wrk"]
        key = (c["model"], c["image"])
        if c["connections"] == 1:
            base[key] = w["requests_per_s"]
        scale = "%.2f" % (w["requests_per_s"] / base[key]) if base.get(key) else "–"
        st = w.get("server_timings_ms", {})
        errs = sum(w["socket_errors"].values())
        lines.append("| " + " | ".join([
            c["model"], "%s (%s)" % (c["image"].replace("photo_", "").replace(".jpg", ""), w.get("decode_scale", "?")),
            str(c["connections"]),
            "%.1f" % w["requests_per_s"], scale, "%.1f" % w["latency_ms"]["p50"], "%.1f" % w["latency_ms"]["p99"],
            str(w["non_2xx"]), str(errs)] + ["%.2f" % st[s] if s in st else "–"
                                             for s in ("decode", "preprocess", "queue", "inference", "total")]) + " |")
    return lines


def layer_profile_tables(rows, threads):
    """Per model: where our time goes, the layer profile's node medians summed per kernel kind at each
    thread count (share of the sum; the top kernels covering 95 %, the rest summed)."""
    lines = []
    for row in rows:
        prof = row.get("layer_profile")
        if not prof:
            continue
        lines += ["### %s" % row["model"], ""]
        if "skipped" in prof:
            lines += ["Skipped: %s" % prof["skipped"], ""]
            continue
        runs = [(t, prof.get(t)) for t in threads if prof.get(t) and "error" not in prof.get(t)]
        for t in threads:
            if prof.get(t) and "error" in prof[t]:
                lines += ["%dT: %s" % (t, prof[t]["error"]), ""]
        if not runs:
            continue
        kernels = [k["kernel"] for k in runs[0][1]["kernels"]]
        for _, p in runs[1:]:
            kernels += [k["kernel"] for k in p["kernels"] if k["kernel"] not in kernels]
        lines += ["| kernel | nodes | " + " | ".join("%dT us (share)" % t for t, _ in runs) + " |",
                  "|---|---:|" + "---:|" * len(runs)]
        covered, rest = 0.0, {t: 0.0 for t, _ in runs}
        for name in kernels:
            by_t = {t: next((k for k in p["kernels"] if k["kernel"] == name), None) for t, p in runs}
            if covered >= 0.95:
                for t, k in by_t.items():
                    rest[t] += k["us"] if k else 0.0
                continue
            first = next(k for k in by_t.values() if k)
            covered += by_t[runs[0][0]]["share"] if by_t[runs[0][0]] else 0.0
            lines.append("| %s | %d | %s |" % (name, first["nodes"], " | ".join(
                "%.0f (%.1f%%)" % (k["us"], 100 * k["share"]) if k else "–" for k in by_t.values())))
        if any(rest.values()):
            lines.append("| other kernels | | %s |" % " | ".join("%.0f" % rest[t] for t, _ in runs))
        lines.append("| **sum of node medians** | | %s |" % " | ".join("**%.0f**" % p["sum_us"] for _, p in runs))
        lines.append("")
    return lines


def batching_section(res):
    """The dynamic batching comparison: per model and connection count, batching off and on."""
    b = res.get("batching")
    if not b:
        return []
    lines = ["## Dynamic batching (wrk, %d s per case, batching off and on alternating)" %
             res["settings"]["wrk_duration_s"], ""]
    if b.get("skipped"):
        return lines + ["Skipped: %s" % b["skipped"], ""]
    img = b["image"]
    lines += ["Each model alone on a server, %s (%d x %d). Off: `%s`; on: `%s`. Medians over the rounds; "
              "`on/off` is the ratio of the medians, then of each round's adjacent pair; `batch`: mean "
              "requests per batch of the answers." % (os.path.basename(img["path"]), img["width"], img["height"],
                                                      b["flags"]["off"], b["flags"]["on"]), ""]
    head = ["model", "conns", "req/s off", "req/s on", "on/off", "per round", "p50 ms off / on",
            "p99 ms off / on", "batch", "non-2xx"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in b["summary"]:
        if "off" not in r or "on" not in r:
            continue
        off, on = r["off"], r["on"]
        lines.append("| " + " | ".join([
            r["model"], str(r["connections"]), "%.1f" % off["requests_per_s"], "%.1f" % on["requests_per_s"],
            "**%.2f**" % r["rps_on_over_off"], ", ".join("%.2f" % x for x in r.get("rps_ratio_per_round", [])),
            "%.0f / %.0f" % (off["p50_ms"], on["p50_ms"]), "%.0f / %.0f" % (off["p99_ms"], on["p99_ms"]),
            "%.1f" % on["mean_batch"], str(off["non_2xx"] + on["non_2xx"])]) + " |")
    errors = [c for c in b["cases"] if "wrk" not in c]
    if errors:
        lines += ["", "Failed cases: " + "; ".join("%s %s round %s: %s" % (c.get("model"), c.get("config"),
                                                                            c.get("round"), c.get("error"))
                                                    for c in errors)]
    return lines + [""]


def write_markdown(path, res):
    threads = res["settings"]["threads"]
    m = res["machine"]
    lines = ["# cnnserve benchmark", "",
             "- date (UTC): %s to %s; git %s" % (res["started_utc"], res["finished_utc"], m.get("git")),
             "- machine: %s, %s CPUs, %s GiB, host %s" % (m["cpu_model"], m["n_cpus"], m["mem_gib"], m["host"]),
             "- load average (1/5/15 min): %s before, %s after the latency runs, %s after the load test"
             % (res["loadavg"]["start"], res["loadavg"]["after_latency"], res["loadavg"]["end"]),
             "- OpenBLAS core type for cnnserve and PyTorch: OPENBLAS_CORETYPE=%s (PyTorch's OpenBLAS reports %s); "
             "sgemm %d^3 peak: %s" % (res["openblas_coretype"], res.get("pytorch_openblas_corename"),
                                     res["settings"]["sgemm_n"], ", ".join(
                                         "%s GFLOP/s at %dT" % (round(v, 1), t)
                                         for t, v in sorted(res["sgemm_peak_gflops"].items()))),
             "- peers: ONNX Runtime %s (onnxruntime-node, CPU EP, intra-op threads = N, inter-op 1); "
             "PyTorch %s (eager, inference_mode, torch.set_num_threads(N); OPENBLAS_NUM_THREADS and "
             "OMP_NUM_THREADS set in every configuration: 1 and 1 at 1 thread, and at N > 1 threads each of %s in "
             "its own process, the fastest median reported as PyTorch NT with its configuration in parentheses); "
             "XNNPACK %s (Debian's 2022 snapshot, the engine of TensorFlow Lite's CPU delegate; bench/peer_xnnpack.c "
             "builds %s with its operator API: NHWC, BatchNorm folded, ReLU fused, hard-swish, residual add and "
             "excitation multiply in place, input given in NHWC; pthreadpool with N threads, none at 1 thread)"
             % (res["peer_versions"].get("onnxruntime"), res["peer_versions"].get("pytorch"), "; ".join(
                 "(%s) %s" % (name, desc) for name, desc, _ in TORCH_CONFIGS), res["peer_versions"].get("xnnpack"),
                ", ".join(XNNPACK_MODELS)),
             "- batch 1, %d timed passes per model, peer and thread count (and PyTorch configuration) split over "
             "%d rounds, each round a fresh process with %d warm-up passes and a time cap of %s s; a model's rounds "
             "alternate the peer order (ours, PyTorch, ORT, then ORT, PyTorch, ours: ABBA), so a change in the "
             "machine's load lands on every peer alike; median/p90/p99/min are over the pooled passes of all rounds; "
             "same weights (%s) and same fixed input for every peer"
             % (res["settings"]["iters"], res["settings"].get("rounds", 1), res["settings"]["warmup"],
                res["settings"].get("max_seconds_per_round", res["settings"].get("max_seconds", 0)),
                res["settings"]["weights_dir"]),
             "- PyTorch at N > 1 threads: its %d configurations share one peer's time cap per round (%s s each) "
             "and a capped one stops after %s passes (not 10), to bound `make bench`"
             % (len(TORCH_CONFIGS), res["settings"].get("pytorch_nt_max_seconds_per_round"),
                res["settings"].get("pytorch_nt_min_passes_per_round")),
             "- why several PyTorch configurations: Debian's torch 1.13 runs its parallel ops (oneDNN "
             "convolutions, batch norm, activations) on libgomp, whose threads busy-wait between parallel regions "
             "by default, and calls the pthread OpenBLAS, whose worker threads also busy-wait (for "
             "2^OPENBLAS_THREAD_TIMEOUT cycles, default 2^28). A spinning OpenMP thread that shares a CPU with "
             "another busy thread (OpenBLAS's, or another process's) waits out scheduler time slices at every "
             "parallel region: in a torch profile of a slow run (A) every OpenMP op took ~3 ms instead of ~0.03 ms "
             "while the BLAS calls were not slow. Under other load this becomes passes of ~2 s, and not only with A: "
             "in a trial with a concurrent `cnnserve bench` shufflenet 2T took 2123 ms (A) and 2128 ms (C, "
             "OpenBLAS 1 thread) per pass but 15 ms with OMP_WAIT_POLICY=PASSIVE (B, and C + PASSIVE). "
             "OPENBLAS_THREAD_TIMEOUT=4 (OpenBLAS's workers sleep at once) did not remove the slow passes",
             "- GFLOP/s = 2 x MACs / median; its share is of the highest sgemm peak that the `cnnserve bench` "
             "processes of that model's rounds measured just before and after it", ""]
    for peer, reason in res["skipped"].items():
        lines.append("**%s skipped:** %s" % (peer, reason))
        lines.append("")
    iters = res["settings"]["iters"]
    table, detail = latency_tables(res["latency"], threads, iters)
    lines += ["## Model latency (median ms; ratio < 1: cnnserve faster)", ""] + table + [""]
    lines += ["Ratios at the 10 % quantile of the same passes (the machine's fast stretches):", ""]
    lines += p10_ratio_table(res["latency"], threads) + [""]
    if any("*" in line for line in table[2:]):
        st = res["settings"]
        lines += ["\\* stopped by the time cap (%s s per round; PyTorch at N > 1 threads: %s s per configuration and "
                  "round) before %d passes; the Percentiles table gives the passes done." % (
                      st.get("max_seconds_per_round", st["max_seconds"]), st.get("pytorch_nt_max_seconds_per_round"),
                      iters), ""]
    checks = [(r["model"], k, v) for r in res["latency"] for k, v in r["logits_check"].items()]
    bad = [c for c in checks if not c[2]["argmax_equal"] or c[2]["max_abs_diff_head"] > 1e-2]
    lines += ["Logits check (first 8 logits and argmax vs ours): %d of %d runs agree within 1e-2%s" % (
        len(checks) - len(bad), len(checks), "; differing: " + ", ".join(
            "%s %s" % (c[0], c[1]) for c in bad) if bad else ""), ""]
    xnn = [(r["model"], r["xnnpack_check"]) for r in res["latency"] if r.get("xnnpack_check")]
    if xnn:
        lines += ["XNNPACK peer, every logit vs ours (in its process, same input): " + "; ".join(
            "%s max |diff| %.2g over %d logits (max |logit| %.3g)" % (m, c["max_abs_diff"], c["n_logits"],
                                                                     c["max_abs_logit_ours"]) for m, c in xnn), ""]
    torch_table = torch_config_table(res["latency"], threads)
    if torch_table:
        lines += ["### PyTorch at N > 1 threads, every configuration", "",
                  "%s. Bold: the fastest median, reported above." % "; ".join(
                      "%s: %s" % (name, desc) for name, desc, _ in TORCH_CONFIGS), ""] + torch_table + [""]
    lines += ["### Percentiles", ""] + detail + [""]
    notes = ["%s: %s" % (r["model"], n) for r in res["latency"] for n in r.get("notes", [])]
    if notes:
        lines += ["Notes: " + "; ".join(notes), ""]
    prof = layer_profile_tables(res["latency"], threads)
    if prof:
        lines += ["## Where our time goes: layer profile by kernel", "",
                  "tests/tools/layer_prof, %s passes per model and thread count after the latency rounds: each node "
                  "run alone (at N threads split as an inference splits it, its hand-off included), its median "
                  "time, summed per kernel kind. The sum of node medians is close to, not equal to, an inference's "
                  "time. Per-node tables: layer_prof/<model>_<N>T.txt next to this file." % res["settings"].get(
                      "prof_iters", "?"), ""] + prof
    if "intake" in res:
        lines += intake_bench.markdown(res["intake"])
    if "wrk" in res:
        w = res["wrk"]
        lines += ["## Service under load (wrk, %d s per case, %s workers)" % (
            res["settings"]["wrk_duration_s"], w.get("workers")), ""]
        if w.get("skipped"):
            lines += ["Skipped: %s" % w["skipped"], ""]
        else:
            lines += ["Images: %s. Server timings are the averages of `timings_ms` over every response (ms); "
                      "`x 1-conn` is the request rate relative to 1 connection." % ", ".join(
                          "%s (%d x %d, %d bytes)" % (os.path.basename(i["path"]), i["width"], i["height"],
                                                       i["bytes"]) for i in w["images"].values()), ""]
            lines += wrk_table(w["cases"]) + [""]
            lines += ["Every response 2xx: %s." % ("yes" if w.get("all_2xx") else "**no** (see non-2xx above)"), ""]
    lines += batching_section(res)
    with open(path, "w") as f:
        f.write("\n".join(lines))
