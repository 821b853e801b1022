// Bad arguments throw (or reject with) the documented TypeError/RangeError; service errors
// are TenureError with a stable code.
'use strict';

const assert = require('node:assert/strict');
const { test } = require('node:test');
const { startServer, connect, rejectsWith, TcpProxy, tenure } = require('./helpers');

const typeErr = { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' };
const valueErr = { name: 'RangeError', code: 'ERR_INVALID_ARG_VALUE' };
const rangeErr = { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' };

test('bad arguments', { timeout: 20000 }, async (t) => {
  const server = await startServer(t);
  const c = await connect(t, [server.address]);

  // Server.start and Client.connect.
  await assert.rejects(tenure.Server.start({ durability: 'sometimes' }), valueErr);
  await assert.rejects(tenure.Server.start({ listen: 7411 }), typeErr);
  await assert.rejects(tenure.Server.start('127.0.0.1:0'), typeErr);
  await assert.rejects(tenure.Server.start({ port: 1 }), valueErr, 'unknown option');
  await assert.rejects(tenure.Client.connect(42), typeErr);
  await assert.rejects(tenure.Client.connect([]), valueErr);
  await assert.rejects(tenure.Client.connect(['nowhere']), valueErr);
  await assert.rejects(tenure.Client.connect([server.address], { sessionTtlMs: 10 }), rangeErr);
  await assert.rejects(tenure.Client.connect([server.address], { sessionTtlMs: '1000' }), typeErr);
  await assert.rejects(tenure.Client.connect([server.address], { retry: 'sometimes' }), valueErr);
  await assert.rejects(tenure.Client.connect([server.address], { driftRatio: 0.7 }), rangeErr);
  await assert.rejects(tenure.Client.connect([server.address], { sessionTtl: 1000 }), valueErr, 'misspelt option');

  // Locks.
  await assert.rejects(c.lock(123), typeErr);
  await assert.rejects(c.lock(''), valueErr);
  await assert.rejects(c.lock('a\0b'), valueErr);
  await assert.rejects(c.lock('x'.repeat(1025)), valueErr);
  await assert.rejects(c.lock('é'.repeat(513)), valueErr, 'the limit is in UTF-8 bytes');
  // Lone surrogates are refused, not rewritten to U+FFFD (which made two names one lock).
  await assert.rejects(c.lock('sur\ud800'), { ...valueErr, message: /lone surrogate \(U\+D800\) at index 3/ });
  await assert.rejects(c.lock('sur\udbff'), valueErr);
  await assert.rejects(c.tryLock('\udc00x'), valueErr);
  await assert.rejects(c.campaign('e\ud800', { candidateId: 'a', priority: 1 }), valueErr);
  await assert.rejects(c.campaign('e', { candidateId: 'a\udfff', priority: 1 }), valueErr);
  assert.throws(() => c.watchGroup('g\ud83d'), valueErr);
  await assert.rejects(tenure.Client.connect([server.address], { clientName: 'n\ud800' }), valueErr);
  // A well-formed pair is fine.
  const emoji = await c.tryLock('sur\ud83d\ude00');
  assert.ok(emoji);
  await emoji.release();
  await assert.rejects(c.lock('x', { timeoutMs: -1 }), rangeErr);
  await assert.rejects(c.lock('x', { timeoutMs: NaN }), rangeErr);
  await assert.rejects(c.lock('x', { timeoutMs: 1e15 }), rangeErr);
  await assert.rejects(c.lock('x', { timeoutMs: '5' }), typeErr);
  await assert.rejects(c.lock('x', { timeout: 5000 }), valueErr);
  await assert.rejects(c.lock('x', null), typeErr);
  await assert.rejects(c.tryLock(undefined), typeErr);
  await assert.rejects(c.revoke(''), valueErr);

  // Elections and groups.
  await assert.rejects(c.campaign('e'), typeErr);
  await assert.rejects(c.campaign('e', {}), typeErr);
  await assert.rejects(c.campaign('e', { candidateId: 'a', priority: 1.5 }), rangeErr);
  await assert.rejects(c.campaign('e', { candidateId: 'a', priority: '1' }), typeErr);
  await assert.rejects(c.campaign('e', { candidateId: 'x'.repeat(257) }), valueErr);
  await assert.rejects(c.campaign('e', { candidateId: 'a', endpoint: 'nohost' }), valueErr);
  await assert.rejects(c.requestElection('e', { timeoutMs: -5 }), rangeErr);
  assert.throws(() => c.observe(5), typeErr);
  assert.throws(() => c.watchGroup(''), valueErr);
  await assert.rejects(c.join('g', { memberId: 'm', probationMs: -1 }), rangeErr);
  await assert.rejects(c.join('g', { id: 'm' }), valueErr);
  await assert.rejects(c.replace('g', '', 'x'), valueErr);
  assert.throws(() => c.events({ highWaterMark: 0 }), rangeErr);

  // Nothing above reached the service or changed the client.
  assert.equal(c.state, 'connected');
  const l = await c.lock('x', { timeoutMs: Infinity });
  await l.release();
});

test('service errors carry stable codes', { timeout: 20000 }, async (t) => {
  const server = await startServer(t);
  const a = await connect(t, [server.address]);
  const b = await connect(t, [server.address]);
  const held = await a.lock('codes/x', { timeoutMs: 1000 });
  await rejectsWith(b.lock('codes/x', { timeoutMs: 50 }), tenure.codes.LOCK_TIMEOUT);
  await rejectsWith(a.tryLock('codes/x'), tenure.codes.LOCK_HELD);
  const e = await b.lock('codes/x', { timeoutMs: 10 }).catch((x) => x);
  assert.ok(e instanceof tenure.TenureError);
  assert.ok(e instanceof Error);
  assert.equal(e.name, 'TenureError');
  assert.equal(e.code, 'ERR_TENURE_LOCK_TIMEOUT');
  assert.match(e.stack, /errors\.test\.js/, 'the stack leads to the caller');
  await b.revoke('codes/x');
  await rejectsWith(held.release(), tenure.codes.LOCK_LOST);
  // No answer within the wait: the service is cut off by a frozen proxy.
  const proxy = await TcpProxy.start(t, server.address);
  const cut = await connect(t, [proxy.address], { sessionTtlMs: 5000 });
  proxy.freeze();
  await rejectsWith(cut.requestElection('codes/none', { timeoutMs: 200 }), tenure.codes.TIMEOUT);
  const c = await connect(t, [server.address]);
  await c.close();
  await rejectsWith(c.revoke('x'), tenure.codes.CLOSED);
  await rejectsWith(c.status(), tenure.codes.CLOSED);
  assert.deepEqual(Object.keys(tenure.codes).length > 10, true);
  for (const code of Object.values(tenure.codes)) assert.match(code, /^ERR_TENURE_[A-Z_]+$/);
});
