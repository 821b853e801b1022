// Type-checked (tsc --noEmit, by test/types.test.js) against the published declarations in
// dist/: how a TypeScript user writes against `tenure`. Never run. The lines under an
// expect-error directive must fail to type-check, or tsc reports the directive as unused.
import * as tenure from 'tenure';
import {
  Client,
  TenureError,
  codes,
  type ClientEvent,
  type Lock,
  type LockLostEvent,
  type LostReason,
  type Master,
  type MasterChangeEvent,
  type View,
} from 'tenure';

export async function usage(dataDir: string): Promise<void> {
  const server: tenure.Server = await tenure.Server.start({ listen: '127.0.0.1:0', dataDir, durability: 'fsync' });
  const address: string = server.address;
  const incarnation: bigint = server.incarnation;
  const client = await Client.connect([address], { sessionTtlMs: 2000, retry: 'exponential' });
  client.on('jeopardy', (ev) => {
    const left: number = ev.remainingMs;
    void left;
  });
  client.on('connected', (ev) => {
    const id: bigint = ev.sessionId;
    void id;
  });
  client.on('dataLost', (ev) => void (ev.oldIncarnation === incarnation));
  client.on('close', () => {});

  const lock: Lock = await client.lock('jobs/reindex', { timeoutMs: 5000 });
  const token: bigint = lock.fencingToken;
  const held: boolean = lock.held;
  lock.on('lost', (ev: LockLostEvent) => {
    const why: LostReason = ev.reason;
    void why;
  });
  await lock.release();
  const maybe: Lock | null = await client.tryLock('jobs/other');
  void maybe;

  const election = await client.campaign('scheduler', { candidateId: 'a', priority: 10 });
  election.on('masterChange', (ev: MasterChangeEvent) => {
    const m: Master | null = ev.master;
    const epoch: bigint | undefined = m?.epoch;
    void epoch;
  });
  const master: Master | null = election.master;
  const isMaster: boolean = election.isMaster;
  const fence: bigint | null = election.masterEpoch;
  await election.resign();
  const observer = client.observe('scheduler');
  observer.on('masterChange', () => {});
  await observer.ready;
  const asked: Master | null = await client.requestElection('scheduler', { timeoutMs: 1000 });

  const membership = await client.join('workers', { memberId: 'm1', probationMs: 100, needsCheck: true });
  membership.on('memberPromoted', (ev) => void ev.member.toUpperCase());
  await membership.reportCheck(true);
  const view: View = membership.view;
  const number: bigint = view.number;
  const watch = client.watchGroup('workers');
  watch.on('viewChanged', (ev) => void ev.members.map((m) => m.full));
  const replaced: View = await client.replace('workers', 'm1', 'm2');

  for await (const ev of client.events()) {
    const e: ClientEvent = ev;
    switch (e.type) {
      case 'lockLost':
        void (e.fencingToken + 1n);
        break;
      case 'masterChanged':
        void e.election;
        break;
      default:
        break;
    }
  }

  const detector = await tenure.Detector.start({
    name: 'a',
    intervalMs: 100,
    networks: [{ name: 'lan', bind: '127.0.0.1:0', peers: [{ name: 'b', address: '127.0.0.1:7000' }] }],
    estimator: 'phi',
  });
  detector.on('peerSuspected', (ev) => {
    const kind: 'process' | 'network' = ev.kind;
    const network: string | null = ev.network;
    void [kind, network];
  });
  const suspected: boolean | undefined = detector.status().peers[0]?.processSuspected;
  detector.unref().ref();

  try {
    await client.lock('x', { timeoutMs: 1 });
  } catch (e) {
    if (e instanceof TenureError && e.code === codes.LOCK_TIMEOUT) {
      const c: 'ERR_TENURE_LOCK_TIMEOUT' = e.code;
      void c;
    }
  }

  // @ts-expect-error fencing tokens are bigint, not number
  const wrong: number = lock.fencingToken;
  // @ts-expect-error unknown event names are refused
  client.on('lockLostt', () => {});
  // @ts-expect-error a listener gets the event of its name
  client.on('lockLost', (ev: MasterChangeEvent) => void ev);
  // @ts-expect-error options are checked: timeoutMs, not timeout
  await client.lock('x', { timeout: 5 });
  // @ts-expect-error a candidate id is required
  await client.campaign('scheduler', { priority: 1 });
  // @ts-expect-error handles come from the client, not from constructors
  new tenure.Lock();
  // @ts-expect-error durability is 'fsync' or 'none'
  await tenure.Server.start({ durability: 'sometimes' });

  await watch.close();
  await observer.close();
  await membership.leave();
  await detector.close();
  await client.close();
  client.unref();
  await server.close();
  void [token, held, master, isMaster, fence, asked, number, replaced, suspected, wrong];
}
