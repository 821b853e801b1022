// Locks: contention, fencing tokens, loss on expiry before anyone else is granted, revoke,
// close, the events iterator.
'use strict';

const assert = require('node:assert/strict');
const { test } = require('node:test');
const { startServer, connect, next, within, waitFor, TcpProxy, rejectsWith, tenure } = require('./helpers');

test('contention: one holder at a time, waiters in turn, tokens increase', { timeout: 30000 }, async (t) => {
  const server = await startServer(t);
  const a = await connect(t, [server.address]);
  const b = await connect(t, server.address);

  const la = await a.tryLock('jobs/x');
  assert.ok(la instanceof tenure.Lock);
  assert.equal(typeof la.fencingToken, 'bigint');
  assert.equal(la.held, true);
  assert.equal(la.name, 'jobs/x');
  assert.equal(la.lostReason, null);

  assert.equal(await b.tryLock('jobs/x'), null, 'tryLock of a held lock resolves to null');
  await rejectsWith(b.lock('jobs/x', { timeoutMs: 150 }), 'ERR_TENURE_LOCK_TIMEOUT');
  await rejectsWith(a.lock('jobs/x', { timeoutMs: 150 }), 'ERR_TENURE_LOCK_HELD');

  // b waits; a's release hands it over, and b's client reports the grant.
  const acquired = next(b, 'lockAcquired');
  const waiting = b.lock('jobs/x', { timeoutMs: 10000 });
  await new Promise((r) => setTimeout(r, 50));
  await la.release();
  assert.equal(la.held, false);
  assert.equal(la.released, true);
  const lb = await within(waiting, 10000, 'the waiting lock');
  assert.ok(lb.fencingToken > la.fencingToken, 'a later grant has a larger fencing token');
  const ev = await acquired;
  assert.deepEqual(ev, { type: 'lockAcquired', name: 'jobs/x', fencingToken: lb.fencingToken });

  // Many concurrent contenders from both clients: at most one holder at any time.
  let holders = 0;
  let maxHolders = 0;
  let grants = 0;
  await lb.release();
  const worker = async (c) => {
    for (let i = 0; i < 10; i++) {
      const l = await c.lock('jobs/y', { timeoutMs: 10000 });
      holders++;
      maxHolders = Math.max(maxHolders, holders);
      grants++;
      await new Promise((r) => setImmediate(r));
      holders--;
      await l.release();
    }
  };
  await within(Promise.all([worker(a), worker(b)]), 20000, 'contending workers');
  assert.equal(maxHolders, 1);
  assert.equal(grants, 20);
});

test('many blocked calls at once do not starve other calls (no fixed-size thread pool)', { timeout: 30000 }, async (t) => {
  const server = await startServer(t);
  const holder = await connect(t, [server.address]);
  const waiters = await Promise.all(Array.from({ length: 12 }, () => connect(t, [server.address])));
  const held = await holder.lock('pool/x', { timeoutMs: 1000 });
  // Twelve calls now block a native thread each, waiting for the lock.
  const pending = waiters.map((c) =>
    c.lock('pool/x', { timeoutMs: 20000 }).then(async (l) => {
      await l.release();
      return l.fencingToken;
    }),
  );
  await new Promise((r) => setTimeout(r, 100));
  // Other calls, and file-system work on libuv's pool, still go through at once.
  const start = Date.now();
  const other = await within(holder.tryLock('pool/other'), 2000, 'a tryLock while 12 calls wait');
  assert.ok(other);
  await within(require('node:fs/promises').readFile(__filename), 2000, 'a file read');
  await within(other.release(), 2000, 'a release');
  assert.ok(Date.now() - start < 2000);
  await held.release();
  const tokens = await within(Promise.all(pending), 20000, 'every waiter in turn');
  assert.equal(new Set(tokens.map(String)).size, 12, 'each waiter got its own grant');
});

test('a holder whose session expires gets lost before the other client is granted', { timeout: 30000 }, async (t) => {
  const server = await startServer(t);
  const proxy = await TcpProxy.start(t, server.address);
  const holder = await connect(t, [proxy.address], { sessionTtlMs: 2000, reopen: false });
  const other = await connect(t, [server.address]);

  const lock = await holder.lock('jobs/expiring', { timeoutMs: 5000 });
  const order = [];
  const lost = new Promise((resolve) =>
    lock.on('lost', (ev) => {
      order.push(['lost', process.hrtime.bigint(), lock.held]);
      resolve(ev);
    }),
  );
  const expired = next(holder, 'expired', 10000);
  const jeopardy = next(holder, 'jeopardy', 10000);
  const granted = other.lock('jobs/expiring', { timeoutMs: 15000 }).then((l) => {
    order.push(['granted', process.hrtime.bigint()]);
    return l;
  });

  proxy.freeze();
  const j = await jeopardy;
  assert.equal(typeof j.remainingMs, 'number');
  const ev = await within(lost, 10000, "the holder's lost event");
  assert.deepEqual(ev, { type: 'lockLost', name: 'jobs/expiring', fencingToken: lock.fencingToken, reason: 'session_expired' });
  await expired;
  const l2 = await within(granted, 15000, "the other client's grant");
  assert.deepEqual(
    order.map((o) => o[0]),
    ['lost', 'granted'],
    'the loss is reported before the lock is granted to anyone else',
  );
  assert.equal(order[0][2], false, 'held is already false when lost fires');
  t.diagnostic(`lost fired ${Number(order[1][1] - order[0][1]) / 1e6} ms before the other client's grant`);
  assert.equal(lock.held, false);
  assert.equal(lock.lostReason, 'session_expired');
  assert.ok(l2.fencingToken > lock.fencingToken);
  await rejectsWith(lock.release(), 'ERR_TENURE_LOCK_LOST');
});

test('a short outage: jeopardy, then recovered, with the same session and locks', { timeout: 30000 }, async (t) => {
  const server = await startServer(t);
  const proxy = await TcpProxy.start(t, server.address);
  const c = await connect(t, [proxy.address], { sessionTtlMs: 3000, connectTimeoutMs: 200 });
  const session = c.sessionId;
  const lock = await c.lock('outage/x', { timeoutMs: 1000 });
  const lost = [];
  lock.on('lost', (ev) => lost.push(ev));
  const jeopardy = next(c, 'jeopardy', 10000);
  proxy.freeze();
  const j = await jeopardy;
  assert.ok(j.remainingMs > 0 && j.remainingMs <= 3000, `remainingMs ${j.remainingMs}`);
  assert.equal(c.state, 'jeopardy');
  const recovered = next(c, 'recovered', 10000);
  proxy.thaw();
  assert.deepEqual(await recovered, { type: 'recovered' });
  assert.equal(c.sessionId, session, 'the same session');
  assert.equal(c.state, 'connected');
  assert.equal(lock.held, true);
  assert.deepEqual(lost, []);
});

test('after an expiry the client opens a new session (connected) and never re-takes locks', { timeout: 30000 }, async (t) => {
  const server = await startServer(t);
  const proxy = await TcpProxy.start(t, server.address);
  const c = await connect(t, [proxy.address], { sessionTtlMs: 800, connectTimeoutMs: 200 });
  const first = c.sessionId;
  const lock = await c.lock('reopen/x', { timeoutMs: 1000 });
  const types = [];
  for (const type of ['jeopardy', 'lockLost', 'expired', 'connected']) c.on(type, (ev) => types.push(ev.type));
  const expired = next(c, 'expired', 10000);
  proxy.freeze();
  await expired;
  assert.equal(c.connected, false);
  const connected = next(c, 'connected', 10000);
  proxy.thaw();
  const ev = await connected;
  assert.equal(typeof ev.sessionId, 'bigint');
  assert.notEqual(ev.sessionId, first, 'a new session');
  assert.equal(ev.sessionId, c.sessionId);
  assert.equal(ev.incarnation, server.incarnation);
  assert.deepEqual(types, ['jeopardy', 'lockLost', 'expired', 'connected'], 'losses come before the expiry, and the expiry before the new session');
  assert.equal(lock.held, false);
  assert.equal(lock.lostReason, 'session_expired');
  const st = await c.status();
  assert.ok(st.locks.every((l) => l.holder !== c.sessionId), 'the new session did not re-take the lock');
  // Once the service expires the old session too, the new one can take the lock again.
  const again = await c.lock('reopen/x', { timeoutMs: 5000 });
  assert.ok(again.fencingToken > lock.fencingToken);
});

test('a server that restarts without its state: dataLost, and every lock lost with data_lost', { timeout: 30000 }, async (t) => {
  const fs = require('node:fs');
  const os = require('node:os');
  const path = require('node:path');
  const dirs = [1, 2].map(() => fs.mkdtempSync(path.join(os.tmpdir(), 'tenure-node-dl-')));
  t.after(() => dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));
  const first = await tenure.Server.start({ listen: '127.0.0.1:0', dataDir: dirs[0], durability: 'none' });
  t.after(() => first.close());
  const address = first.address;
  const c = await connect(t, [address], { sessionTtlMs: 3000, connectTimeoutMs: 200 });
  const lock = await c.lock('dl/x', { timeoutMs: 1000 });
  const order = [];
  lock.on('lost', (ev) => order.push(`lost ${ev.reason}`));
  const dataLost = new Promise((resolve) =>
    c.on('dataLost', (ev) => {
      order.push('dataLost');
      resolve(ev);
    }),
  );
  await first.close();
  const second = await tenure.Server.start({ listen: address, dataDir: dirs[1], durability: 'none' });
  t.after(() => second.close());
  const ev = await within(dataLost, 15000, 'dataLost');
  assert.equal(ev.oldIncarnation, first.incarnation);
  assert.equal(ev.newIncarnation, second.incarnation);
  assert.notEqual(ev.oldIncarnation, ev.newIncarnation);
  assert.deepEqual(order, ['lost data_lost', 'dataLost'], 'locks are reported lost before the data loss');
  assert.equal(lock.held, false);
  await waitFor(() => c.connected, 10000, 'a new session on the new incarnation');
  assert.equal(c.incarnation, second.incarnation);
});

test('revoke: the holder loses the lock with reason released, and it is never an error event', { timeout: 20000 }, async (t) => {
  const server = await startServer(t);
  const a = await connect(t, [server.address]);
  const admin = await connect(t, [server.address]);
  let errors = 0;
  a.on('error', () => errors++);
  const lock = await a.lock('jobs/revoked', { timeoutMs: 1000 });
  const lost = next(lock, 'lost');
  const clientLost = next(a, 'lockLost');
  await admin.revoke('jobs/revoked');
  const ev = await lost;
  assert.equal(ev.reason, 'released');
  assert.deepEqual(await clientLost, ev);
  assert.equal(lock.held, false);
  assert.equal(errors, 0);
  const again = await admin.tryLock('jobs/revoked');
  assert.ok(again, 'a revoked lock is free');
});

test('close: locks are lost with client_closed before close resolves; later calls fail', { timeout: 20000 }, async (t) => {
  const server = await startServer(t);
  const c = await connect(t, [server.address]);
  const iter = c.events();
  const l1 = await c.lock('a', { timeoutMs: 1000 });
  const l2 = await c.tryLock('b');
  const seen = [];
  l1.on('lost', (ev) => seen.push(`l1 ${ev.reason}`));
  l2.on('lost', (ev) => seen.push(`l2 ${ev.reason}`));
  c.on('lockLost', (ev) => seen.push(`client ${ev.name}`));
  c.on('close', () => seen.push('close'));
  const collected = (async () => {
    const out = [];
    for await (const ev of iter) out.push(ev.type);
    return out;
  })();
  await c.close();
  assert.equal(seen.at(-1), 'close');
  assert.deepEqual(seen.filter((s) => s.startsWith('l')).sort(), ['l1 client_closed', 'l2 client_closed']);
  assert.deepEqual(seen.filter((s) => s.startsWith('client')).sort(), ['client a', 'client b']);
  assert.deepEqual(await within(collected, 5000, 'the iterator to end'), ['lockAcquired', 'lockAcquired', 'lockLost', 'lockLost']);
  assert.equal(c.closed, true);
  assert.equal(c.state, 'closed');
  await c.close(); // idempotent
  await rejectsWith(c.lock('a'), 'ERR_TENURE_CLOSED');
  await rejectsWith(c.tryLock('a'), 'ERR_TENURE_CLOSED');
  assert.throws(() => c.observe('e'), { code: 'ERR_TENURE_CLOSED' });
  const done = await c.events().next();
  assert.equal(done.done, true);
});

test('for await over client.events() sees the events in order', { timeout: 20000 }, async (t) => {
  const server = await startServer(t);
  const c = await connect(t, [server.address]);
  const admin = await connect(t, [server.address]);
  const it = c.events();
  const got = [];
  const reader = (async () => {
    for await (const ev of it) {
      got.push(ev);
      if (got.length === 2) break;
    }
  })();
  const l = await c.lock('it/x', { timeoutMs: 1000 });
  await admin.revoke('it/x');
  await within(reader, 5000, 'two events');
  assert.deepEqual(
    got.map((e) => [e.type, e.name, e.fencingToken]),
    [
      ['lockAcquired', 'it/x', l.fencingToken],
      ['lockLost', 'it/x', l.fencingToken],
    ],
  );
  assert.equal(got[1].reason, 'released');
  // `break` ended the iterator.
  assert.deepEqual(await it.next(), { value: undefined, done: true });
});

test('no server: connect rejects with ERR_TENURE_CONNECTION_FAILED', { timeout: 20000 }, async () => {
  const net = require('node:net');
  const srv = net.createServer();
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const port = srv.address().port;
  await new Promise((r) => srv.close(r));
  await rejectsWith(tenure.Client.connect([`127.0.0.1:${port}`], { connectTimeoutMs: 300 }), 'ERR_TENURE_CONNECTION_FAILED');
});

test('status shows sessions and locks with bigint ids and tokens', { timeout: 20000 }, async (t) => {
  const server = await startServer(t);
  const c = await connect(t, [server.address], { sessionTtlMs: 3000, clientName: 'status-test' });
  const l = await c.lock('st/x', { timeoutMs: 1000 });
  const st = await c.status();
  assert.equal(st.incarnation, server.incarnation);
  assert.equal(typeof st.revision, 'bigint');
  assert.ok(st.sessions.some((s) => s.id === c.sessionId && s.ttlMs === 3000));
  assert.deepEqual(st.locks, [{ name: 'st/x', holder: c.sessionId, fencingToken: l.fencingToken, waiters: [] }]);
  assert.equal(c.state, 'connected');
  assert.equal(c.connected, true);
  assert.equal(c.incarnation, server.incarnation);
  await waitFor(() => c.droppedEvents === 0, 100, 'no dropped events');
});

test('waiting locks take no thread each: the core keeps their timeouts', { timeout: 30000 }, async (t) => {
  const fs = require('node:fs');
  const threads = () => fs.readdirSync('/proc/self/task').length;
  const server = await startServer(t);
  const a = await connect(t, server.address);
  const b = await connect(t, server.address);
  const held = [];
  for (let i = 0; i < 50; i++) held.push(await a.lock(`n${i}`));
  const blocker = await a.lock('short');
  const before = threads();
  const waits = held.map((_, i) => b.lock(`n${i}`, { timeoutMs: 10000 }));
  // Handled from the start: it rejects while the thread count is read.
  const short = rejectsWith(b.lock('short', { timeoutMs: 200 }), 'ERR_TENURE_LOCK_TIMEOUT');
  await new Promise((r) => setTimeout(r, 300));
  assert.ok(threads() - before < 5, `threads ${before} -> ${threads()} for 51 waiting locks`);
  await short;
  for (const l of held) await l.release();
  const granted = await within(Promise.all(waits), 10000, 'the waiting locks');
  assert.ok(granted.every((l) => l.held));
  for (const l of granted) await l.release();
  await blocker.release();
});

test('subscriptions take no thread each: events go straight to the JavaScript thread', { timeout: 30000 }, async (t) => {
  const fs = require('node:fs');
  const threads = () => fs.readdirSync('/proc/self/task').length;
  const server = await startServer(t);
  const a = await connect(t, server.address);
  const b = await connect(t, server.address);
  const before = threads();
  const seen = [];
  const observers = [];
  const watches = [];
  for (let i = 0; i < 10; i++) {
    const o = a.observe(`sub/e${i}`);
    o.on('masterChanged', (ev) => seen.push(ev));
    observers.push(o);
    const w = a.watchGroup(`sub/g${i}`);
    w.on('viewChanged', (ev) => seen.push(ev));
    watches.push(w);
  }
  for (const o of observers) await within(o.ready, 5000, 'observer ready');
  for (const w of watches) await within(w.ready, 5000, 'watch ready');
  assert.ok(threads() - before <= 1, `threads ${before} -> ${threads()} for 20 subscriptions`);
  const elections = [];
  for (let i = 0; i < 10; i++) elections.push(await b.campaign(`sub/e${i}`, { candidateId: 'b', priority: 1 }));
  await waitFor(() => seen.filter((e) => e.type === 'masterChanged' && e.master).length === 10, 5000, 'every observer told');
  assert.ok(threads() - before <= 1, `threads ${before} -> ${threads()} after the events`);
  for (const e of elections) await e.resign();
  for (const o of observers) o.close();
  for (const w of watches) w.close();
});

test("the limits are the core's table, and enforced", { timeout: 30000 }, async (t) => {
  assert.equal(tenure.limits.nameBytes, 1024);
  assert.equal(tenure.limits.waitersPerLock, 10000);
  assert.ok(Object.isFrozen(tenure.limits));
  const server = await startServer(t);
  const c = await connect(t, server.address);
  await assert.rejects(c.tryLock('x'.repeat(tenure.limits.nameBytes + 1)), RangeError);
  const l = await c.tryLock('x'.repeat(tenure.limits.nameBytes));
  assert.ok(l && l.held);
  await l.release();
});

test('connecting, status and closing take no thread each', { timeout: 30000 }, async (t) => {
  const fs = require('node:fs');
  const threads = () => fs.readdirSync('/proc/self/task').length;
  const n = 20;
  const server = await startServer(t);
  const first = await tenure.Client.connect([server.address], { sessionTtlMs: 2000 });
  await first.status();
  const before = threads();
  // Each client has its session's own two threads (its timer, and its connection's reader or
  // dial); the calls themselves add none.
  const clients = await within(
    Promise.all(Array.from({ length: n }, () => tenure.Client.connect([server.address], { sessionTtlMs: 2000 }))),
    10000,
    'the connects',
  );
  assert.equal(threads() - before, 2 * n);
  const statuses = clients.map((c) => c.status());
  assert.ok(threads() - before <= 2 * n, `threads ${before} -> ${threads()} for ${n} status calls`);
  for (const s of await Promise.all(statuses)) assert.equal(s.sessions.length, n + 1);
  const closes = clients.map((c) => c.close());
  assert.ok(threads() - before <= 2 * n, `threads ${before} -> ${threads()} for ${n} closes`);
  await within(Promise.all(closes), 10000, 'the closes');
  await waitFor(() => threads() === before, 5000, 'the clients\' threads to end');
  await first.close();
});
