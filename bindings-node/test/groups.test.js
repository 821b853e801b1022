// Groups: probation, promotion, application checks, replacement in one view change, leaving.
'use strict';

const assert = require('node:assert/strict');
const { test } = require('node:test');
const { startServer, connect, within, waitFor, tenure } = require('./helpers');

test('members are promoted, replaced in one view change and removed; watchers see it in view order', { timeout: 30000 }, async (t) => {
  const server = await startServer(t);
  const [c0, c1, c2, c3] = await Promise.all([0, 1, 2, 3].map(() => connect(t, [server.address])));

  const watch = c0.watchGroup('workers');
  assert.ok(watch instanceof tenure.GroupWatch);
  const seen = [];
  for (const type of ['viewChanged', 'memberPromoted', 'memberRemoved']) watch.on(type, (ev) => seen.push(ev));
  await within(watch.ready, 5000, 'watch ready');

  const m1 = await c1.join('workers', { memberId: 'm1', probationMs: 50 });
  assert.ok(m1 instanceof tenure.Membership);
  assert.equal(m1.group, 'workers');
  assert.equal(m1.memberId, 'm1');
  await waitFor(() => m1.isFull, 5000, 'm1 promoted after its probation');
  await waitFor(() => seen.some((e) => e.type === 'memberPromoted' && e.member === 'm1'), 5000, 'watch sees m1 promoted');

  const m2 = await c2.join('workers', { memberId: 'm2', needsCheck: true });
  const m2events = [];
  m2.on('memberPromoted', (ev) => m2events.push(ev));
  await waitFor(() => m2.isMember, 5000, 'm2 joined');
  assert.equal(m2.isFull, false, 'a member that needs a check stays probationary');
  await m2.reportCheck(true);
  await waitFor(() => m2.isFull, 5000, 'm2 promoted after its check');
  await waitFor(() => m2events.some((e) => e.member === 'm2'), 5000, "m2's own promotion event");

  const m3 = await c3.join('workers', { memberId: 'm3', needsCheck: true });
  await waitFor(() => m3.isMember, 5000, 'm3 joined');
  const view = await c0.replace('workers', 'm1', 'm3');
  assert.equal(typeof view.number, 'bigint');
  assert.deepEqual(view.members, [
    { id: 'm2', full: true },
    { id: 'm3', full: true },
  ]);
  // The view change and the member events that come with it are delivered one by one: wait
  // for the two events after it too, then check what they are.
  const at = () => seen.findIndex((x) => x.type === 'viewChanged' && x.view === view.number);
  await waitFor(() => at() >= 0 && seen.length >= at() + 3, 5000, 'the replacement view and the two events after it');
  const inView = seen.filter((e, i) => i > seen.findIndex((x) => x.type === 'viewChanged' && x.view === view.number));
  assert.deepEqual(
    inView.slice(0, 2).map((e) => `${e.type} ${e.member}`).sort(),
    ['memberPromoted m3', 'memberRemoved m1'],
    'promotion and removal come with the same view change',
  );
  await waitFor(() => !m1.isMember, 5000, 'm1 told it was removed');

  await m2.leave();
  await waitFor(() => seen.some((e) => e.type === 'memberRemoved' && e.member === 'm2'), 5000, 'm2 removed');
  assert.equal(m2.isMember, false);
  assert.deepEqual(watch.view.members, [{ id: 'm3', full: true }]);

  const views = seen.filter((e) => e.type === 'viewChanged');
  for (let i = 1; i < views.length; i++) assert.ok(views[i].view > views[i - 1].view, 'view numbers increase');
  for (const e of seen) assert.equal(e.group, 'workers');
  await watch.close();
});
