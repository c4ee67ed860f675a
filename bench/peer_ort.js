#!/usr/bin/env node
// ONNX Runtime peer of `cnnserve bench` (npm onnxruntime-node, CPU execution provider): batch 1 on
// the ONNX exports of bench/export_onnx.py, per model and thread count (intraOpNumThreads = N,
// interOpNumThreads = 1), with the same fixed input as ours. Each timed pass is one awaited
// session.run, as a Node.js user would call it. Each run records every timed pass in "times_ms" (in the
// order measured), so bench/run_bench.py can pool the passes of several rounds.
//
// usage: node peer_ort.js --onnx-dir DIR --models a,b --threads 1,2 [--iters 100] [--warmup 10]
//                         [--max-seconds S] --json FILE
// --max-seconds caps each model and thread count as `cnnserve bench --max-seconds` does.
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');

const MIN_CAPPED_ITERS = 10; // as BENCH_MIN_CAPPED_ITERS in server/bench_cli.c

function parseArgs(argv) {
  const a = { iters: 100, warmup: 10, max_seconds: 0 };
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, '').replace(/-/g, '_');
    if (i + 1 >= argv.length) throw new Error(`${argv[i]} needs a value`);
    a[key] = argv[i + 1];
  }
  for (const k of ['onnx_dir', 'models', 'threads', 'json']) if (!a[k]) throw new Error(`--${k.replace(/_/g, '-')} is required`);
  a.models = a.models.split(',');
  a.threads = a.threads.split(',').map(Number);
  a.iters = Number(a.iters);
  a.warmup = Number(a.warmup);
  a.max_seconds = Number(a.max_seconds);
  return a;
}

// The fixed input: x[i] = (i mod 251) / 125 - 1 in double, rounded to float32 (as server/bench_cli.c).
function fixedInput(size) {
  const x = new Float32Array(3 * size * size);
  for (let i = 0; i < x.length; i++) x[i] = (i % 251) / 125.0 - 1.0;
  return x;
}

// p-th percentile of sorted values, linear between closest ranks (numpy's default).
function percentile(sorted, p) {
  const pos = (p / 100) * (sorted.length - 1);
  const lo = Math.floor(pos);
  const hi = Math.min(lo + 1, sorted.length - 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

function loadavg() {
  try {
    return fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).map(Number);
  } catch (e) {
    return null;
  }
}

async function benchRun(ort, file, threads, args) {
  const session = await ort.InferenceSession.create(file, {
    executionProviders: ['cpu'],
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
  });
  try {
    const shape = session.inputMetadata[0].shape;
    if (shape.length !== 4 || shape.some((d) => typeof d !== 'number')) throw new Error(`input shape ${JSON.stringify(shape)} is not fixed 4-D`);
    const feeds = { [session.inputNames[0]]: new ort.Tensor('float32', fixedInput(shape[2]), shape) };
    let out;
    const capMs = args.max_seconds * 1000;
    const tStart = process.hrtime.bigint();
    for (let i = 0; i < args.warmup; i++) {
      if (i && capMs > 0 && Number(process.hrtime.bigint() - tStart) / 1e6 > capMs / 6) break;
      await session.run(feeds);
    }
    const load = loadavg();
    const times = [];
    let timedMs = 0;
    while (times.length < args.iters && !(capMs > 0 && times.length >= MIN_CAPPED_ITERS && timedMs > capMs)) {
      const t0 = process.hrtime.bigint();
      out = await session.run(feeds);
      times.push(Number(process.hrtime.bigint() - t0) / 1e6);
      timedMs += times[times.length - 1];
    }
    const measured = times.slice();
    times.sort((x, y) => x - y);
    const logits = out[session.outputNames[0]].data;
    let argmax = 0;
    for (let k = 1; k < logits.length; k++) if (logits[k] > logits[argmax]) argmax = k;
    return {
      threads, iters: times.length, median_ms: percentile(times, 50), p90_ms: percentile(times, 90),
      p99_ms: percentile(times, 99), min_ms: times[0], max_ms: times[times.length - 1],
      loadavg_before: load, argmax, logits_head: Array.from(logits.slice(0, 8)), times_ms: measured,
    };
  } finally {
    await session.release();
  }
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const out = { peer: 'onnxruntime', node: process.version, n_cpus: os.cpus().length, models: [] };
  let ort;
  try {
    ort = require(path.join(__dirname, 'node_modules', 'onnxruntime-node'));
    out.version = ort.env.versions.node || ort.env.versions.common;
  } catch (e) {
    out.skipped = `onnxruntime-node is not installed in ${__dirname}/node_modules (${e.message.split('\n')[0]})`;
    console.error(`peer_ort: skipped: ${out.skipped}`);
  }
  for (const model of ort ? args.models : []) {
    const entry = { model, runs: [] };
    try {
      for (const threads of args.threads) {
        const r = await benchRun(ort, path.join(args.onnx_dir, `${model}.onnx`), threads, args);
        entry.runs.push(r);
        console.log(`onnxruntime ${model.padEnd(20)} ${threads}T  median ${r.median_ms.toFixed(3).padStart(8)} ms  ` +
                    `p90 ${r.p90_ms.toFixed(3).padStart(8)}  p99 ${r.p99_ms.toFixed(3).padStart(8)}  (${r.iters} passes)`);
      }
    } catch (e) {
      entry.error = String(e.message || e);
      console.error(`peer_ort: ${model}: ${entry.error}`);
    }
    out.models.push(entry);
  }
  fs.writeFileSync(args.json, JSON.stringify(out, null, 1));
}

if (require.main === module) {
  main().catch((e) => {
    console.error(`peer_ort: ${e.message || e}`);
    process.exit(2);
  });
}

module.exports = { fixedInput, percentile };
