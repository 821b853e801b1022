#!/usr/bin/env node
// Benchmarks of the Node package (run after `npm run build`):
//
// 1. tryLock + release from Node (through Promises and the native call pool) against the
//    same loop in Rust (a client of the core driven by the addon's hidden
//    `_benchTryLockRelease`), on one embedded server.
//    Also the floor of any call: an empty native call's Promise (thread hand-off and
//    settling on the JavaScript thread).
// 2. Event delivery latency from the core to a JavaScript listener: events are queued on a
//    core subscription (the path of every client event: the core's thread hands it to the
//    inline handler -> threadsafe function -> JS dispatcher -> EventEmitter listener; no
//    core dispatcher thread), each stamped with the time it was queued.
//
// Usage: node bench/bench.js [--rounds N] [--events N] [--fsync] [--json]
'use strict';

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { EventEmitter } = require('node:events');
const tenure = require('..');
const { native } = require('../dist/native');
const { deliver } = require('../dist/events');

function arg(name, dflt) {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
}
const ROUNDS = arg('--rounds', 5000);
const WARMUP = Math.min(500, ROUNDS);
const EVENTS = arg('--events', 5000);
const FSYNC = process.argv.includes('--fsync');
const JSON_OUT = process.argv.includes('--json');

function stats(ns) {
  const s = Float64Array.from(ns).sort();
  const pick = (q) => s[Math.min(s.length - 1, Math.floor(q * s.length))] / 1000;
  const mean = s.reduce((a, b) => a + b, 0) / s.length / 1000;
  return { n: s.length, meanUs: mean, p50Us: pick(0.5), p99Us: pick(0.99), maxUs: s[s.length - 1] / 1000 };
}

const fmt = (x) => x.toFixed(1).padStart(8);

async function lockBench(server) {
  const client = await tenure.Client.connect([server.address]);
  const node = [];
  for (let i = 0; i < WARMUP + ROUNDS; i++) {
    const t0 = process.hrtime.bigint();
    const l = await client.tryLock('bench/node');
    await l.release();
    if (i >= WARMUP) node.push(Number(process.hrtime.bigint() - t0));
  }
  await client.close();
  const floor = [];
  for (let i = 0; i < WARMUP + ROUNDS; i++) {
    const t0 = process.hrtime.bigint();
    await native._benchNoop();
    if (i >= WARMUP) floor.push(Number(process.hrtime.bigint() - t0));
  }
  await native._benchTryLockRelease(server.address, 'bench/rust', WARMUP);
  const rust = await native._benchTryLockRelease(server.address, 'bench/rust', ROUNDS);
  return { node: stats(node), rust: stats(rust), emptyCall: stats(floor) };
}

async function eventBench(gapUs) {
  const emitter = new EventEmitter();
  const lat = [];
  emitter.on('lockAcquired', (ev) => lat.push(native._nowNs() - Number(ev.fencingToken)));
  await native._benchEvents(EVENTS, gapUs, (ev) => deliver(emitter, ev.type, ev));
  const deadline = Date.now() + 5000;
  while (lat.length < EVENTS && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  return { ...stats(lat), received: lat.length };
}

async function main() {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tenure-node-bench-'));
  const server = await tenure.Server.start({ listen: '127.0.0.1:0', dataDir, durability: FSYNC ? 'fsync' : 'none' });
  const locks = await lockBench(server);
  await server.close();
  fs.rmSync(dataDir, { recursive: true, force: true });
  const spaced = await eventBench(200);
  const burst = await eventBench(0);

  const { emptyCall, ...lockRuns } = locks;
  const result = {
    machine: `${os.cpus().length} x ${os.cpus()[0] && os.cpus()[0].model}, node ${process.version}, ${os.platform()} ${os.release()}`,
    durability: FSYNC ? 'fsync' : 'none',
    rounds: ROUNDS,
    tryLockRelease: { ...lockRuns, overheadUs: locks.node.meanUs - locks.rust.meanUs, ratio: locks.node.meanUs / locks.rust.meanUs },
    emptyCall,
    eventLatency: { spaced200us: spaced, burst },
  };
  if (JSON_OUT) {
    console.log(JSON.stringify(result, null, 2));
    return;
  }
  console.log(`tenure Node benchmarks  (${result.machine}; server durability ${result.durability})`);
  console.log('');
  console.log(`tryLock + release, ${ROUNDS} rounds, one client     mean      p50      p99      max  (us)`);
  for (const [who, s] of [
    ['Node (Promises)', locks.node],
    ['Rust (core client)', locks.rust],
    ['an empty native call from Node (the floor)', locks.emptyCall],
  ]) {
    console.log(`  ${who.padEnd(44)}${fmt(s.meanUs)} ${fmt(s.p50Us)} ${fmt(s.p99Us)} ${fmt(s.maxUs)}`);
  }
  console.log(
    `  Node costs ${result.tryLockRelease.overheadUs.toFixed(1)} us more per round than Rust (x${result.tryLockRelease.ratio.toFixed(2)})`,
  );
  console.log('');
  console.log(`event delivery, core -> JS listener, ${EVENTS} events      mean      p50      p99      max  (us)`);
  for (const [who, s] of [['one every 200 us', spaced], ['burst (back to back)', burst]]) {
    console.log(`  ${who.padEnd(44)}${fmt(s.meanUs)} ${fmt(s.p50Us)} ${fmt(s.p99Us)} ${fmt(s.maxUs)}   (${s.received} received)`);
  }
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
