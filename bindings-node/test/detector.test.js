// The failure detector: a silent network path is a network suspicion, a dead process a
// process suspicion.
'use strict';

const assert = require('node:assert/strict');
const dgram = require('node:dgram');
const { test } = require('node:test');
const { within, waitFor, tenure } = require('./helpers');

async function freePorts(n) {
  const socks = [];
  for (let i = 0; i < n; i++) {
    const s = dgram.createSocket('udp4');
    await new Promise((r) => s.bind(0, '127.0.0.1', r));
    socks.push(s);
  }
  const ports = socks.map((s) => s.address().port);
  await Promise.all(socks.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

test('path and process suspicions over two networks', { timeout: 30000 }, async (t) => {
  const names = ['a', 'b', 'c'];
  const ports = await freePorts(6); // per process: network n1, network n2
  const addr = (p, net) => `127.0.0.1:${ports[names.indexOf(p) * 2 + (net === 'n1' ? 0 : 1)]}`;
  const detectors = {};
  for (const name of names) {
    const peers = names.filter((p) => p !== name);
    detectors[name] = await tenure.Detector.start({
      name,
      intervalMs: 20,
      networks: ['n1', 'n2'].map((net) => ({
        name: net,
        bind: addr(name, net),
        peers: peers.map((p) => ({ name: p, address: addr(p, net) })),
      })),
    });
  }
  t.after(() => Promise.all(Object.values(detectors).map((d) => d.close())));
  const a = detectors.a;
  assert.equal(a.localAddress('n1'), addr('a', 'n1'));
  assert.equal(a.localAddress('nope'), null);
  const seen = [];
  for (const type of ['peerSuspected', 'peerRecovered', 'networkDown', 'networkUp']) a.on(type, (ev) => seen.push(ev));

  await waitFor(() => a.status().peers.every((p) => p.links.every((l) => l.heartbeats > 5)), 5000, 'heartbeats flowing');
  const counters = a.counters();
  assert.ok(counters.sent > 0 && counters.received > 0);

  // c stops sending on n2 only: its path on n2 is suspected, not its process.
  detectors.c.setSending('n2', false);
  await waitFor(() => seen.some((e) => e.type === 'peerSuspected' && e.peer === 'c'), 10000, 'a suspicion of c');
  assert.deepEqual(seen.find((e) => e.type === 'peerSuspected' && e.peer === 'c'), {
    type: 'peerSuspected',
    peer: 'c',
    kind: 'network',
    network: 'n2',
  });
  detectors.c.setSending('n2', true);
  await waitFor(() => seen.some((e) => e.type === 'peerRecovered' && e.peer === 'c'), 10000, 'c recovered on n2');
  assert.deepEqual(seen.find((e) => e.type === 'peerRecovered'), { type: 'peerRecovered', peer: 'c', network: 'n2' });

  // c dies: its process is suspected.
  const it = a.events();
  await detectors.c.close();
  const suspicion = (async () => {
    for await (const ev of it) {
      if (ev.type === 'peerSuspected' && ev.peer === 'c') return ev;
    }
    return null;
  })();
  const ev = await within(suspicion, 10000, 'process suspicion of c');
  assert.deepEqual(ev, { type: 'peerSuspected', peer: 'c', kind: 'process', network: null });
  assert.equal(a.status().peers.find((p) => p.name === 'c').processSuspected, true);
  assert.equal(seen.filter((e) => e.type === 'peerSuspected' && e.peer !== 'c').length, 0, 'nobody else is suspected');
  assert.throws(() => detectors.c.status(), { code: 'ERR_TENURE_CLOSED' });
});

test('detector options are checked', async () => {
  await assert.rejects(tenure.Detector.start(), TypeError);
  await assert.rejects(tenure.Detector.start({ name: 'x', intervalMs: 0, networks: [] }), RangeError);
  await assert.rejects(
    tenure.Detector.start({ name: 'x', intervalMs: 10, networks: [{ name: 'n', bind: '127.0.0.1:0', peers: [] }] }),
    RangeError,
  );
  await assert.rejects(
    tenure.Detector.start({
      name: 'x',
      intervalMs: 10,
      networks: [{ name: 'n', bind: '127.0.0.1:0', peers: [{ name: 'x', address: '127.0.0.1:9' }] }],
    }),
    (e) => e instanceof RangeError && /own peer/.test(e.message),
    'the core refuses a process that lists itself (its InvalidArgument is a RangeError)',
  );
  await assert.rejects(
    tenure.Detector.start({
      name: 'x',
      intervalMs: 10,
      networks: [{ name: 'n', bind: '127.0.0.1:0', peers: [{ name: 'y', address: '127.0.0.1:9' }] }],
      estimator: 'bogus',
    }),
    RangeError,
  );
});
