// The client: one session with the tenure service, its locks, and the doors to elections and
// groups.

import { EventEmitter } from 'node:events';
import { Election, Observer } from './election';
import { call, closedError, invalidType, invalidValue, outOfRange, TenureError } from './errors';
import {
  DEFAULT_HIGH_WATER_MARK,
  deliver,
  EventIterator,
  type ClientEvent,
  type ConnectedEvent,
  type DataLostEvent,
  type ExpiredEvent,
  type JeopardyEvent,
  type LockAcquiredEvent,
  type LockLostEvent,
  type LostReason,
  type Master,
  type MasterChangedEvent,
  type Member,
  type MemberPromotedEvent,
  type MemberRemovedEvent,
  type RecoveredEvent,
  type EmitterArgs,
  type ViewChangedEvent,
} from './events';
import { GroupWatch, Membership, type View } from './group';
import { KeepAlive } from './keepalive';
import { native, type NativeClient, type NativeClientOptions, type NativeLock, type RawEvent } from './native';
import { Router } from './router';
import * as v from './validate';

/** Options of {@link Client.connect}. */
export interface ClientOptions {
  /** Session TTL in milliseconds, 50 to 86 400 000. Default 10 000. */
  sessionTtlMs?: number;
  /** Clock-drift allowance as a fraction of the TTL, in [0, 0.5). Default 0.01. */
  driftRatio?: number;
  /** Safety margin taken off the client's deadline, in milliseconds. Default 0. */
  safetyMarginMs?: number;
  /** Longest wait for one connection attempt, in milliseconds. Default 1000. */
  connectTimeoutMs?: number;
  /** Open a new session automatically after the old one expired (default true). Locks are never re-taken. */
  reopen?: boolean;
  /** A name shown in logs and `tenure status`. Default `pid-<pid>`. */
  clientName?: string;
  /** Retry policy while in jeopardy. Default `'inverseExponential'`. */
  retry?: 'inverseExponential' | 'exponential' | 'fixed';
}

const CLIENT_OPTIONS = [
  'sessionTtlMs',
  'driftRatio',
  'safetyMarginMs',
  'connectTimeoutMs',
  'reopen',
  'clientName',
  'retry',
] as const;

/** Options of {@link Client.lock}. */
export interface LockOptions {
  /** Longest wait for the lock, in milliseconds; `Infinity` (the default) waits for as long as it takes. */
  timeoutMs?: number;
}

/** Options of {@link Client.campaign}. */
export interface CampaignOptions {
  /** Candidate id, unique in the election (1 to 256 bytes). */
  candidateId: string;
  /** Priority: higher wins. An integer; default 0. */
  priority?: number;
  /** How other processes reach this candidate (`host:port`); the service checks it before designating it. */
  endpoint?: string;
  /** Take over from a live master of lower priority (default false). */
  preempt?: boolean;
}

/** Options of {@link Client.requestElection}. */
export interface RequestElectionOptions {
  /** Longest wait for the answer, in milliseconds. Default 5000. */
  timeoutMs?: number;
}

/** Options of {@link Client.join}. */
export interface JoinOptions {
  /** Member id, unique in the group (1 to 256 bytes). */
  memberId: string;
  /** Time with a live session and no missed heartbeat before promotion, in milliseconds. Default 0. */
  probationMs?: number;
  /** Promotion also waits for {@link Membership.reportCheck} to pass (default false). */
  needsCheck?: boolean;
}

/** Options of {@link Client.events}. */
export interface EventsOptions {
  /** Events buffered while nobody reads; newer ones are dropped beyond it. Default 65536. */
  highWaterMark?: number;
}

/** The session state as the client sees it. */
export type SessionState = 'connected' | 'jeopardy' | 'expired' | 'closed';

/** The service's state, as {@link Client.status} resolves it. */
export interface ServiceStatus {
  incarnation: bigint;
  /** The last fencing token handed out (or later). */
  revision: bigint;
  sessions: { id: bigint; ttlMs: number }[];
  locks: { name: string; holder: bigint; fencingToken: bigint; waiters: bigint[] }[];
  elections: {
    name: string;
    epoch: bigint;
    master: Master | null;
    candidates: { id: string; priority: number; session: bigint }[];
  }[];
  groups: { name: string; view: bigint; members: Member[] }[];
}

/** The events of a {@link Client}, by name. */
export interface ClientEvents {
  connected: ConnectedEvent;
  jeopardy: JeopardyEvent;
  recovered: RecoveredEvent;
  expired: ExpiredEvent;
  dataLost: DataLostEvent;
  lockAcquired: LockAcquiredEvent;
  lockLost: LockLostEvent;
  masterChanged: MasterChangedEvent;
  /** @deprecated The same event as `masterChanged`, under its first name. */
  masterChange: MasterChangedEvent;
  viewChanged: ViewChangedEvent;
  memberPromoted: MemberPromotedEvent;
  memberRemoved: MemberRemovedEvent;
  /** The client is closed and every event it had was delivered. */
  close: undefined;
}

/** Something a client owns and closes with it. @internal */
export interface Child {
  _clientClosed(): void;
}

/** Internal access between the client and what it owns. @internal */
export interface ClientLink {
  forget(child: Child): void;
  forgetLock(lock: Lock): void;
}

function endpoints(x: unknown): string[] {
  if (typeof x === 'string') return [v.endpoint('endpoints', x)];
  if (!Array.isArray(x)) throw invalidType('endpoints', 'a string or an array of strings', x);
  if (x.length === 0) throw invalidValue('endpoints', 'must list at least one endpoint');
  return x.map((e, i) => v.endpoint(`endpoints[${i}]`, e));
}

function clientOptions(options: unknown): NativeClientOptions {
  const o = v.options('options', options, CLIENT_OPTIONS);
  const out: NativeClientOptions = {};
  const ttl = v.opt(o.sessionTtlMs, (x) => v.ms('options.sessionTtlMs', x, { min: v.MIN_TTL_MS, max: v.MAX_TTL_MS }));
  if (ttl !== undefined) out.sessionTtlMs = ttl;
  if (o.driftRatio !== undefined) {
    const r = o.driftRatio;
    if (typeof r !== 'number') throw invalidType('options.driftRatio', 'a number', r);
    if (!(r >= 0 && r < 0.5)) throw outOfRange('options.driftRatio', 'in [0, 0.5)', r);
    out.driftRatio = r;
  }
  const margin = v.opt(o.safetyMarginMs, (x) => v.ms('options.safetyMarginMs', x));
  if (margin !== undefined) {
    const effTtl = ttl ?? 10_000;
    if (margin >= effTtl / 2) throw outOfRange('options.safetyMarginMs', 'under half the session TTL', margin);
    out.safetyMarginMs = margin;
  }
  const ct = v.opt(o.connectTimeoutMs, (x) => v.ms('options.connectTimeoutMs', x, { min: 1 }));
  if (ct !== undefined) out.connectTimeoutMs = ct;
  const reopen = v.opt(o.reopen, (x) => v.bool('options.reopen', x));
  if (reopen !== undefined) out.reopen = reopen;
  const name = v.opt(o.clientName, (x) => v.string('options.clientName', x, v.MAX_CLIENT_NAME_BYTES));
  if (name !== undefined) out.clientName = name;
  const retry = v.opt(o.retry, (x) => v.oneOf('options.retry', x, ['inverseExponential', 'exponential', 'fixed'] as const));
  if (retry !== undefined) out.retry = retry;
  return out;
}

/** How long close() waits for the native side's last events once the close is done. */
const CLOSE_MARKER_WAIT_MS = 3000;

/**
 * A connection to the tenure service with one session, kept alive by heartbeats on a native
 * thread (a busy or blocked event loop never costs the session).
 *
 * Events (see {@link ClientEvents}): `'connected'` (a session re-opened after an expiry; the
 * first session is open when `connect()` resolves), `'jeopardy'`, `'recovered'`, `'expired'`,
 * `'dataLost'`, `'lockAcquired'`, `'lockLost'`, `'masterChanged'` and group events of the
 * elections and groups this client takes part in, and `'close'`. Also
 * `for await (const ev of client.events())`.
 *
 * An open client keeps the process alive until {@link Client.close} (or {@link Client.unref}).
 */
export class Client extends EventEmitter<EmitterArgs<ClientEvents>> {
  #native: NativeClient;
  #keepAlive = new KeepAlive();
  #locks = new Map<string, Lock>();
  #children = new Set<Child>();
  #iterators = new Set<EventIterator<ClientEvent>>();
  #closing: Promise<void> | null = null;
  #closed = false;
  #markerSeen!: () => void;
  #marker = new Promise<void>((resolve) => {
    this.#markerSeen = resolve;
  });
  #link: ClientLink = {
    forget: (c) => this.#children.delete(c),
    forgetLock: (l) => {
      if (this.#locks.get(l.name) === l) this.#locks.delete(l.name);
    },
  };

  private constructor(n: NativeClient, router: Router) {
    super();
    this.#native = n;
    router.attach((ev) => this.#receive(ev));
  }

  /**
   * Connects to the first reachable endpoint (`host:port`, or a list tried in order), opens
   * a session and starts keeping it alive; `etcd://host:port,host:port` endpoints use an etcd
   * cluster instead of tenure servers (the etcd backend). Rejects with `ERR_TENURE_CONNECTION_FAILED` when
   * no endpoint answers.
   */
  static async connect(endpoints_: string | readonly string[], options?: ClientOptions): Promise<Client> {
    const eps = endpoints(endpoints_);
    const opts = clientOptions(options);
    const router = new Router();
    const n = await call(native.connectClient(eps, opts, router.callback));
    return new Client(n, router);
  }

  #receive(ev: RawEvent): void {
    if (ev.type === 'close') {
      this.#markerSeen();
      return;
    }
    if (ev.type === 'lockLost') {
      const l = this.#locks.get(ev.name as string);
      if (l && l.fencingToken === ev.fencingToken) l._lost(ev as unknown as LockLostEvent);
    }
    deliver(this, ev.type, ev);
    for (const it of this.#iterators) it.push(ev as unknown as ClientEvent);
  }

  /** The current session id (0n while none is open). */
  get sessionId(): bigint {
    return this.#native.sessionId;
  }

  /** The service's incarnation token, as learnt at the last connection. */
  get incarnation(): bigint {
    return this.#native.incarnation;
  }

  /** The session state. */
  get state(): SessionState {
    return this.#native.state as SessionState;
  }

  /** True while the session's lease is valid by the client's own deadline. */
  get connected(): boolean {
    return this.#native.connected;
  }

  /** True once {@link Client.close} was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Events dropped because this process fell more than 65536 events behind. */
  get droppedEvents(): number {
    return this.#native.droppedEvents;
  }

  #checkOpen(): void {
    if (this.#closed) throw closedError('client');
  }

  #heldHere(name: string): void {
    const l = this.#locks.get(name);
    if (l && l.held) throw new TenureError('ERR_TENURE_LOCK_HELD', `this client already holds the lock ${JSON.stringify(name)}`);
  }

  #adopt(n: NativeLock): Lock {
    const l = Lock._new(n, this.#link);
    this.#locks.set(l.name, l);
    // A loss that happened before the lock was registered here (its event went by) is
    // reported on a later turn, after the caller attached its listeners.
    const reason = n.lostReason;
    if (reason !== null) {
      setImmediate(() =>
        l._lost({ type: 'lockLost', name: l.name, fencingToken: l.fencingToken, reason: reason as LostReason }),
      );
    }
    return l;
  }

  /**
   * Waits up to `timeoutMs` for the lock `name`; waiters are served in arrival order. Rejects
   * with `ERR_TENURE_LOCK_TIMEOUT` when the time passes (no lock is then held) and
   * `ERR_TENURE_LOCK_HELD` when this client holds it already.
   */
  async lock(name: string, options?: LockOptions): Promise<Lock> {
    v.name('name', name);
    const o = v.options('options', options, ['timeoutMs'] as const);
    const timeout = v.opt(o.timeoutMs, (x) => v.ms('options.timeoutMs', x, { infinity: true })) ?? v.MAX_MS;
    this.#checkOpen();
    this.#heldHere(name);
    return this.#adopt(await call(this.#native.lock(name, timeout)));
  }

  /** Takes the lock `name` if it is free; resolves to null when another session holds it. */
  async tryLock(name: string): Promise<Lock | null> {
    v.name('name', name);
    this.#checkOpen();
    this.#heldHere(name);
    const n = await call(this.#native.tryLock(name));
    return n ? this.#adopt(n) : null;
  }

  /**
   * Administrative: releases the lock `name` whoever holds it. The holder is told (its lock
   * is lost with reason `'released'`) and the next waiter is granted it.
   */
  async revoke(name: string): Promise<void> {
    v.name('name', name);
    this.#checkOpen();
    await call(this.#native.revoke(name));
  }

  /** The service's sessions, locks, elections and groups. */
  async status(): Promise<ServiceStatus> {
    this.#checkOpen();
    return (await call(this.#native.status())) as ServiceStatus;
  }

  /**
   * Registers this client as a candidate of `election`. When the election has no master,
   * the service designates one at once (the highest priority that answers its check). The
   * returned {@link Election} emits `'masterChanged'`, first with the current master.
   */
  async campaign(election: string, options: CampaignOptions): Promise<Election> {
    v.name('election', election);
    if (options === undefined) throw invalidType('options', 'an object with candidateId', options);
    const o = v.options('options', options, ['candidateId', 'priority', 'endpoint', 'preempt'] as const);
    const id = v.id('options.candidateId', o.candidateId);
    const priority = v.opt(o.priority, (x) => v.integer('options.priority', x)) ?? 0;
    const endpoint = v.opt(o.endpoint, (x) => v.endpoint('options.endpoint', x)) ?? null;
    const preempt = v.opt(o.preempt, (x) => v.bool('options.preempt', x)) ?? false;
    this.#checkOpen();
    const n = await call(this.#native.campaign(election, id, priority, endpoint, preempt));
    const e = Election._new(n, id, this.#link);
    this.#children.add(e);
    return e;
  }

  /**
   * Observes `election` without being a candidate. Returns at once; the returned
   * {@link Observer} emits `'masterChanged'`, first with the current master, once the service
   * answered (`observer.ready`).
   */
  observe(election: string): Observer {
    v.name('election', election);
    this.#checkOpen();
    const o = Observer._new(election, call(this.#native.observe(election)), this.#link);
    this.#children.add(o);
    return o;
  }

  /**
   * Asks for `election`'s master: the cached one when it is live, else the one the service
   * designates now. Resolves to null when no candidate answers; rejects with
   * `ERR_TENURE_TIMEOUT` after `timeoutMs`.
   */
  async requestElection(election: string, options?: RequestElectionOptions): Promise<Master | null> {
    v.name('election', election);
    const o = v.options('options', options, ['timeoutMs'] as const);
    const timeout = v.opt(o.timeoutMs, (x) => v.ms('options.timeoutMs', x)) ?? 5000;
    this.#checkOpen();
    const st = await call(this.#native.requestElection(election, timeout));
    return st.master;
  }

  /**
   * Joins `group` as a probationary member; the service promotes it to full member after
   * `probationMs` of healthy session (and a passed check, with `needsCheck`).
   */
  async join(group: string, options: JoinOptions): Promise<Membership> {
    v.name('group', group);
    if (options === undefined) throw invalidType('options', 'an object with memberId', options);
    const o = v.options('options', options, ['memberId', 'probationMs', 'needsCheck'] as const);
    const id = v.id('options.memberId', o.memberId);
    const probation = v.opt(o.probationMs, (x) => v.ms('options.probationMs', x, { max: v.MAX_TTL_MS })) ?? 0;
    const needsCheck = v.opt(o.needsCheck, (x) => v.bool('options.needsCheck', x)) ?? false;
    this.#checkOpen();
    const n = await call(this.#native.join(group, id, probation, needsCheck));
    const m = Membership._new(n, id, this.#link);
    this.#children.add(m);
    return m;
  }

  /** Watches `group`'s views without being a member. Returns at once (see `watch.ready`). */
  watchGroup(group: string): GroupWatch {
    v.name('group', group);
    this.#checkOpen();
    const w = GroupWatch._new(group, call(this.#native.watchGroup(group)), this.#link);
    this.#children.add(w);
    return w;
  }

  /**
   * Removes the failed full member `failed` and promotes the probationary member
   * `probationary` in a single view change; resolves to the new view.
   */
  async replace(group: string, failed: string, probationary: string): Promise<View> {
    v.name('group', group);
    v.id('failed', failed);
    v.id('probationary', probationary);
    this.#checkOpen();
    return await call(this.#native.replace(group, failed, probationary));
  }

  /**
   * Every event of this client, as an async iterator: `for await (const ev of client.events())`.
   * The iteration ends when the client is closed (after its last events) or on `break`.
   */
  events(options?: EventsOptions): AsyncIterableIterator<ClientEvent> {
    const o = v.options('options', options, ['highWaterMark'] as const);
    const hwm = v.opt(o.highWaterMark, (x) => v.integer('options.highWaterMark', x)) ?? DEFAULT_HIGH_WATER_MARK;
    if (hwm < 1) throw outOfRange('options.highWaterMark', 'a positive integer', hwm);
    const it = new EventIterator<ClientEvent>(hwm, (x) => this.#iterators.delete(x));
    if (this.#closed) it.end();
    else this.#iterators.add(it);
    return it;
  }

  /**
   * Closes the session: every held lock is reported lost with reason `'client_closed'` and
   * released on the server, every election, observer, membership and watch of this client
   * ends, and later calls reject with `ERR_TENURE_CLOSED`. Resolves after every event of the
   * client was delivered, with `'close'` last. Idempotent.
   */
  close(): Promise<void> {
    if (!this.#closing) {
      this.#closed = true;
      this.#keepAlive.hold();
      this.#closing = this.#doClose();
    }
    return this.#closing;
  }

  async #doClose(): Promise<void> {
    try {
      await call(this.#native.close());
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        this.#marker,
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, CLOSE_MARKER_WAIT_MS);
        }),
      ]);
      clearTimeout(timer);
    } finally {
      for (const l of [...this.#locks.values()]) {
        l._lost({ type: 'lockLost', name: l.name, fencingToken: l.fencingToken, reason: l.lostReason ?? 'client_closed' });
      }
      this.#locks.clear();
      for (const c of [...this.#children]) c._clientClosed();
      this.#children.clear();
      for (const it of [...this.#iterators]) it.end();
      this.#keepAlive.release();
      deliver(this, 'close', undefined);
    }
  }

  /** Lets the process exit while the client is open (the session then ends with the process). */
  unref(): this {
    this.#keepAlive.unref();
    return this;
  }

  /** Keeps the process alive while the client is open (the default). */
  ref(): this {
    this.#keepAlive.ref();
    return this;
  }
}

/** The events of a {@link Lock}. */
export interface LockEvents {
  /** The lock is lost; `ev.reason` says why. Never emitted after `release()`. */
  lost: LockLostEvent;
}

/**
 * A held lock, with the fencing token of its grant. Emits `'lost'` when it is lost (at the
 * latest at the client's lease deadline, so before the service can grant it to anyone else).
 * Obtained from {@link Client.lock} or {@link Client.tryLock}.
 */
export class Lock extends EventEmitter<EmitterArgs<LockEvents>> {
  #native: NativeLock;
  #link: ClientLink;
  #name: string;
  #token: bigint;
  #lost: LockLostEvent | null = null;
  #releasing: Promise<void> | null = null;

  private constructor(n: NativeLock, link: ClientLink) {
    super();
    this.#native = n;
    this.#link = link;
    this.#name = n.name;
    this.#token = n.fencingToken;
  }

  /** @internal */
  static _new(n: NativeLock, link: ClientLink): Lock {
    return new Lock(n, link);
  }

  /** The lock's name. */
  get name(): string {
    return this.#name;
  }

  /**
   * The fencing token of this grant: larger than every token granted before it, for any lock
   * of the service. Pass it to the resources you write and have them refuse older tokens.
   */
  get fencingToken(): bigint {
    return this.#token;
  }

  /**
   * True while the lock is held: not released, not lost, and the session's lease valid by
   * the client's own deadline (it turns false at the deadline with no message needed).
   */
  get held(): boolean {
    return this.#releasing === null && this.#lost === null && this.#native.held;
  }

  /** Why the lock was lost, once it was; null otherwise. */
  get lostReason(): LostReason | null {
    return this.#lost?.reason ?? (this.#native.lostReason as LostReason | null);
  }

  /** True once {@link Lock.release} was called. */
  get released(): boolean {
    return this.#releasing !== null;
  }

  /**
   * Releases the lock and waits for the server to confirm. Rejects with
   * `ERR_TENURE_LOCK_LOST` when the lock had been lost. Idempotent.
   */
  release(): Promise<void> {
    if (!this.#releasing) {
      this.#link.forgetLock(this);
      this.#releasing = call(this.#native.release());
    }
    return this.#releasing;
  }

  /** @internal Reports the loss once; never after a release. */
  _lost(ev: LockLostEvent): void {
    if (this.#lost || this.#releasing) return;
    this.#lost = ev;
    this.#link.forgetLock(this);
    deliver(this, 'lost', ev);
  }
}
