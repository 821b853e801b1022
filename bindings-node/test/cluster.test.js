// A replicated group: three `tenure serve` processes (the command line, TENURE_BIN); a client
// given all three endpoints keeps its lock when the leader is killed with SIGKILL.
'use strict';

const assert = require('node:assert/strict');
const { spawn, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { test } = require('node:test');
const { tenure } = require('./helpers');

const BIN = process.env.TENURE_BIN || '';

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** The id of the group's leader, from `tenure status --json` (within 10 s). */
async function leaderOf(addrs) {
  const deadline = Date.now() + 10000;
  while (Date.now() < deadline) {
    try {
      const out = execFileSync(BIN, ['status', '--json', '--endpoints', addrs.join(',')], {
        timeout: 10000,
        stdio: ['ignore', 'pipe', 'ignore'],
      });
      const leader = JSON.parse(out.toString()).leader;
      if (leader) return leader.id;
    } catch (_) {
      // no leader yet
    }
    await sleep(50);
  }
  throw new Error('no leader within 10 s');
}

test('a client given three endpoints survives a leader kill', { timeout: 60000 }, async (t) => {
  assert.ok(BIN && fs.existsSync(BIN), 'TENURE_BIN must name the tenure command line (tests/run-all.sh sets it)');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tenure-node-cluster-'));
  const addrs = [];
  for (let i = 0; i < 3; i++) addrs.push(`127.0.0.1:${await freePort()}`);
  const cluster = addrs.map((a, i) => `${i + 1}=${a}`).join(',');
  const procs = addrs.map((a, i) =>
    spawn(BIN, ['serve', '--id', String(i + 1), '--listen', a, '--data', path.join(dir, `m${i + 1}`),
      '--cluster', cluster, '--bootstrap'], { stdio: 'ignore' }));
  t.after(() => {
    for (const p of procs) p.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  });

  let client;
  const deadline = Date.now() + 10000;
  for (;;) {
    try {
      client = await tenure.Client.connect(addrs, { sessionTtlMs: 3000 });
      break;
    } catch (e) {
      assert.ok(Date.now() < deadline, `the group did not serve within 10 s: ${e.message}`);
      await sleep(50);
    }
  }
  t.after(() => client.close());
  const lost = [];
  for (const type of ['lockLost', 'expired', 'dataLost']) client.on(type, (ev) => lost.push(ev));

  const held = await client.lock('node/held', { timeoutMs: 5000 });
  const leader = await leaderOf(addrs);
  procs[leader - 1].kill('SIGKILL');
  const killed = Date.now();
  let next = null;
  while (next === null) {
    assert.ok(Date.now() - killed < 10000, 'no lock within 10 s of the kill');
    try {
      next = await client.tryLock('node/next');
    } catch (_) {
      await sleep(5);
    }
  }
  assert.ok(next.fencingToken > held.fencingToken, 'tokens grow across leaders');
  assert.equal(held.held, true, 'the lock is kept');
  assert.deepEqual(lost, [], 'nothing reported lost');
  await next.release();
  await held.release();
});
