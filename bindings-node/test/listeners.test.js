// Listeners: a throwing one does not kill the process; a blocking one does not cost the
// session.
'use strict';

const assert = require('node:assert/strict');
const path = require('node:path');
const { test } = require('node:test');
const { startServer, connect, next, runNode, sleep, within } = require('./helpers');

test('a listener that throws does not terminate the process; it is reported as a warning', { timeout: 30000 }, async () => {
  const r = await runNode([path.join(__dirname, 'fixtures', 'throwing-listener.js')], { timeoutMs: 20000 });
  assert.equal(r.timedOut, false, r.stderr);
  assert.equal(r.code, 0, `exit code; stderr:\n${r.stderr}`);
  const out = JSON.parse(r.stdout.trim().split('\n').at(-1));
  assert.equal(out.alive, true);
  assert.equal(out.after, 2, 'the listener after the throwing one ran for both events');
  assert.deepEqual(
    out.warnings.map((w) => [w.name, w.code, w.cause]),
    [
      ['TenureListenerWarning', 'ERR_TENURE_LISTENER', 'sync boom'],
      ['TenureListenerWarning', 'ERR_TENURE_LISTENER', 'async boom'],
      ['TenureListenerWarning', 'ERR_TENURE_LISTENER', 'sync boom'],
    ],
  );
  assert.match(r.stderr, /TenureListenerWarning/);
  assert.doesNotMatch(r.stderr, /Uncaught|unhandled/i);
});

test('a listener that blocks the event loop for 2 s does not cost the session', { timeout: 30000 }, async (t) => {
  const server = await startServer(t);
  const client = await connect(t, [server.address], { sessionTtlMs: 600 });
  const admin = await connect(t, [server.address]);
  const session = client.sessionId;
  const bad = [];
  for (const type of ['jeopardy', 'expired', 'lockLost', 'dataLost', 'connected']) client.on(type, (ev) => bad.push(ev));

  const lock = await client.lock('block/x', { timeoutMs: 2000 });
  let blockedFor = 0;
  const acquired = next(client, 'lockAcquired');
  client.once('lockAcquired', () => {
    const start = Date.now();
    while (Date.now() - start < 2000) {
      // Busy: no timer, no I/O, no event of any kind runs on this thread.
    }
    blockedFor = Date.now() - start;
  });
  // A second lock's grant event triggers the blocking listener.
  const second = await client.lock('block/y', { timeoutMs: 2000 });
  await acquired;
  assert.ok(blockedFor >= 2000);
  // More than three TTLs went by on the JS thread; the native heartbeats kept the session.
  await sleep(100);
  assert.equal(client.sessionId, session, 'same session');
  assert.equal(client.state, 'connected');
  assert.equal(client.connected, true);
  assert.equal(lock.held, true);
  assert.equal(second.held, true);
  assert.deepEqual(bad, [], 'no jeopardy, expiry or loss');
  // The service agrees: another client cannot take the lock.
  assert.equal(await admin.tryLock('block/x'), null);
  const st = await admin.status();
  assert.ok(st.sessions.some((s) => s.id === session));
  await within(Promise.all([lock.release(), second.release()]), 5000, 'releases');
});
