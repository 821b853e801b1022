// Elections: master changes reach candidates and observers in epoch order.
'use strict';

const assert = require('node:assert/strict');
const { test } = require('node:test');
const { startServer, connect, next, within, waitFor, tenure } = require('./helpers');

function recorder(emitter) {
  const evs = [];
  emitter.on('masterChange', (ev) => evs.push(ev));
  return evs;
}

function assertEpochOrder(evs, who) {
  for (let i = 1; i < evs.length; i++) {
    assert.ok(evs[i].epoch > evs[i - 1].epoch, `${who}: epochs strictly increase (${evs.map((e) => e.epoch)})`);
  }
}

test('master changes on candidates and an observer, in epoch order', { timeout: 30000 }, async (t) => {
  const server = await startServer(t);
  const ca = await connect(t, [server.address]);
  const cb = await connect(t, [server.address]);
  const co = await connect(t, [server.address]);

  const observer = co.observe('scheduler');
  assert.ok(observer instanceof tenure.Observer);
  const seenO = recorder(observer);
  // The canonical name, 'masterChanged', gets the same events as the first name.
  const seenOCanonical = [];
  observer.on('masterChanged', (ev) => seenOCanonical.push(ev));
  await within(observer.ready, 5000, 'observer ready');
  assert.equal(observer.master, null);

  const a = await ca.campaign('scheduler', { candidateId: 'a', priority: 10, endpoint: undefined });
  const seenA = recorder(a);
  const b = await cb.campaign('scheduler', { candidateId: 'b', priority: 5 });
  const seenB = recorder(b);
  const clientEvents = recorder(co);

  // a was designated when it registered (no master before); b keeps it (no preemption).
  const toA = (evs) => evs.some((e) => e.master && e.master.id === 'a');
  await waitFor(() => a.isMaster && toA(seenA) && toA(seenB) && toA(seenO), 5000, 'a designated, everyone told');
  assert.equal(a.isMaster, true);
  assert.equal(b.isMaster, false);
  assert.equal(typeof a.masterEpoch, 'bigint');
  assert.equal(b.masterEpoch, null);
  assert.equal(a.master.id, 'a');
  assert.equal(seenB.at(-1).master.id, 'a', "b's first event carries the current master");
  const first = a.epoch;
  assert.equal(a.masterEpoch, first);

  const viaRequest = await co.requestElection('scheduler');
  assert.deepEqual(viaRequest, { id: 'a', endpoint: null, epoch: first });

  // a resigns: b takes over at a later epoch, and everyone hears it.
  const toB = (evs) => evs.some((e) => e.master && e.master.id === 'b');
  await a.resign();
  await waitFor(() => toB(seenB) && toB(seenO), 5000, 'b designated');
  assert.equal(b.isMaster, true);
  assert.ok(b.masterEpoch > first);

  // b resigns: no candidate left, master null.
  await b.resign();
  await waitFor(() => seenO.at(-1).master === null, 5000, 'no master');
  await waitFor(() => clientEvents.some((e) => e.master === null && e.epoch > first), 5000, 'the client-level event');
  assert.equal(await co.requestElection('scheduler', { timeoutMs: 2000 }), null);

  assert.deepEqual(seenOCanonical, seenO, "'masterChanged' and 'masterChange' listeners see the same events");
  for (const [who, evs] of [['a', seenA], ['b', seenB], ['observer', seenO], ['observer client', clientEvents]]) {
    assertEpochOrder(evs, who);
    for (const ev of evs) {
      assert.equal(ev.type, 'masterChanged');
      assert.equal(ev.election, 'scheduler');
      assert.equal(typeof ev.epoch, 'bigint');
      if (ev.master) assert.equal(ev.master.epoch, ev.epoch);
    }
  }
  // Designations as the observer saw them: a, then b (a hand-over may pass through an epoch
  // with no master), and no master at the end.
  assert.deepEqual(seenO.filter((e) => e.master).map((e) => e.master.id), ['a', 'b']);
  assert.equal(seenO.at(-1).master, null);
  await observer.close();
  assert.equal(observer.closed, true);
});

test('a master whose client closes hands over; higher priority preempts only with preempt', { timeout: 40000 }, async (t) => {
  const server = await startServer(t);
  const [c1, c2, c3] = await Promise.all([1, 2, 3].map(() => connect(t, [server.address], { sessionTtlMs: 1000 })));

  const low = await c1.campaign('svc', { candidateId: 'low', priority: 1 });
  await waitFor(() => low.isMaster, 5000, 'low is master');
  const high = await c2.campaign('svc', { candidateId: 'high', priority: 100 });
  const toHigh = next(high, 'masterChange');
  assert.equal((await toHigh).master.id, 'low', 'no preemption by default');

  // With preempt, a higher priority takes over from a live master, but never while it still
  // believes: the master steps down first (an epoch with no master), and the successor is
  // designated once the old master's TTL has passed.
  const pre = await c3.campaign('svc2', { candidateId: 'p1', priority: 1 });
  await waitFor(() => pre.isMaster, 5000, 'p1 master');
  const seenPre = recorder(pre);
  const p2 = await c2.campaign('svc2', { candidateId: 'p2', priority: 9, preempt: true });
  let overlap = false;
  const watchOverlap = setInterval(() => (overlap ||= pre.isMaster && p2.isMaster), 1);
  await waitFor(() => p2.isMaster, 10000, 'p2 preempts');
  clearInterval(watchOverlap);
  assert.equal(overlap, false, 'never two masters');
  await waitFor(() => !pre.isMaster && seenPre.some((e) => e.master && e.master.id === 'p2'), 5000, 'p1 is told');
  const stepDown = seenPre.findIndex((e) => e.master === null);
  const successor = seenPre.findIndex((e) => e.master && e.master.id === 'p2');
  assert.ok(stepDown >= 0 && stepDown < successor, 'p1 hears the step-down before the successor');

  const handed = new Promise((resolve) => high.on('masterChange', (ev) => ev.master && ev.master.id === 'high' && resolve(ev)));
  await c1.close();
  const ev = await within(handed, 10000, 'hand-over after close');
  assert.equal(ev.master.id, 'high');
  assert.equal(low.isMaster, false);
});
