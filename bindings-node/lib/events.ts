// The event vocabulary (SPEC section 4) in JavaScript, and how events reach listeners.
//
// Events are produced on tenure's native threads and handed to the JavaScript thread through
// a non-blocking threadsafe function; they arrive as plain objects with `type` and the fields
// below. `deliver` runs every listener inside its own try/catch: a listener that throws (or
// returns a rejected promise) never stops the others, never reaches the native threads, and
// never crashes the process; it is reported with `process.emitWarning` (a warning named
// `TenureListenerWarning` with code `ERR_TENURE_LISTENER` whose `cause` is what was thrown).
// tenure never emits `'error'`: an expected change such as a lost lock is an ordinary event.

/** Why a lock was lost. */
export type LostReason = 'session_expired' | 'released' | 'data_lost' | 'client_closed';

/** The master of an election and the epoch it was designated at. */
export interface Master {
  /** Candidate id. */
  id: string;
  /** How to reach it (`host:port`), or null if it gave none. */
  endpoint: string | null;
  /** Epoch of its designation; use it as a fencing token for the master's writes. */
  epoch: bigint;
}

/** A group member and its status. */
export interface Member {
  /** Member id. */
  id: string;
  /** True for a full member, false for a probationary one. */
  full: boolean;
}

/**
 * The `masterChanged` event under the name this package gave it first.
 * @deprecated Use {@link MasterChangedEvent} and listen to `'masterChanged'`.
 */
export type MasterChangeEvent = MasterChangedEvent;

/** A session was opened again (after an expiry, with `reopen`). */
export interface ConnectedEvent {
  type: 'connected';
  sessionId: bigint;
  incarnation: bigint;
}
/** A heartbeat failed; retries run until the client's deadline. */
export interface JeopardyEvent {
  type: 'jeopardy';
  /** Time left until the client's deadline. */
  remainingMs: number;
}
/** A retry succeeded before the deadline. */
export interface RecoveredEvent {
  type: 'recovered';
}
/** The client's deadline passed; every lock of the session was reported lost first. */
export interface ExpiredEvent {
  type: 'expired';
}
/** The service's state was lost (its incarnation changed); every lock was reported lost first. */
export interface DataLostEvent {
  type: 'dataLost';
  oldIncarnation: bigint;
  newIncarnation: bigint;
}
/** A waiting `lock()` was granted. */
export interface LockAcquiredEvent {
  type: 'lockAcquired';
  name: string;
  fencingToken: bigint;
}
/** A held lock is lost. Releasing a lock is not a loss. */
export interface LockLostEvent {
  type: 'lockLost';
  name: string;
  fencingToken: bigint;
  reason: LostReason;
}
/** The master of an election changed. Epochs strictly increase. */
export interface MasterChangedEvent {
  type: 'masterChanged';
  election: string;
  epoch: bigint;
  /** The new master, or null when the election has none. */
  master: Master | null;
}
/** A group's view changed. View numbers strictly increase. */
export interface ViewChangedEvent {
  type: 'viewChanged';
  group: string;
  view: bigint;
  members: Member[];
}
/** A probationary member was promoted to full member. */
export interface MemberPromotedEvent {
  type: 'memberPromoted';
  group: string;
  member: string;
}
/** A member left the group (removed, failed its evaluation, or its session ended). */
export interface MemberRemovedEvent {
  type: 'memberRemoved';
  group: string;
  member: string;
}
/** A failure detector suspects a peer's process (`network` null) or its path on one network. */
export interface PeerSuspectedEvent {
  type: 'peerSuspected';
  peer: string;
  kind: 'process' | 'network';
  network: string | null;
}
/** A suspected peer (or its path on `network`) is heard from again. */
export interface PeerRecoveredEvent {
  type: 'peerRecovered';
  peer: string;
  network: string | null;
}
/** No peer was heard on this local network within the network-failure limit. */
export interface NetworkDownEvent {
  type: 'networkDown';
  network: string;
}
/** A network that was down carries heartbeats again. */
export interface NetworkUpEvent {
  type: 'networkUp';
  network: string;
}

/** Every event of a client, as `client.events()` yields them. */
export type ClientEvent =
  | ConnectedEvent
  | JeopardyEvent
  | RecoveredEvent
  | ExpiredEvent
  | DataLostEvent
  | LockAcquiredEvent
  | LockLostEvent
  | MasterChangedEvent
  | ViewChangedEvent
  | MemberPromotedEvent
  | MemberRemovedEvent;

/** Every event of a failure detector. */
export type DetectorEvent = PeerSuspectedEvent | PeerRecoveredEvent | NetworkDownEvent | NetworkUpEvent;

/** Any tenure event. */
export type TenureEvent = ClientEvent | DetectorEvent;

/** Events of a group handle. */
export type GroupEvent = ViewChangedEvent | MemberPromotedEvent | MemberRemovedEvent;

/** The warning emitted (through `process.emitWarning`) when a listener throws. */
export class TenureListenerWarning extends Error {
  readonly code = 'ERR_TENURE_LISTENER';
  /** What the listener threw. */
  override readonly cause: unknown;

  constructor(event: string, cause: unknown) {
    const what = cause instanceof Error ? `${cause.name}: ${cause.message}` : String(cause);
    super(`a listener of tenure's '${event}' event threw (${what}); other listeners and later events are not affected`);
    this.cause = cause;
  }

  override get name(): string {
    return 'TenureListenerWarning';
  }
}

function report(event: string, err: unknown): void {
  try {
    process.emitWarning(new TenureListenerWarning(event, err));
  } catch {
    // A throwing 'warning' listener is not ours to handle.
  }
}

/** What `deliver` needs of an EventEmitter, whatever its event map. */
interface Emitter {
  rawListeners(type: string): unknown[];
}

/** Calls every listener of `type` on `emitter` with `ev`, each guarded. */
export function deliver(emitter: Emitter, type: string, ev: unknown): void {
  deliverTo(emitter, type, ev);
  const alias = ALIASES[type];
  if (alias !== undefined) {
    deliverTo(emitter, alias, ev);
  }
}

/**
 * Event names this package used before the canonical ones (the camelCase of SPEC section 4's
 * names): their listeners still receive the event, after the canonical name's listeners.
 */
const ALIASES: Record<string, string> = { masterChanged: 'masterChange' };

function deliverTo(emitter: Emitter, type: string, ev: unknown): void {
  const listeners = emitter.rawListeners(type);
  for (const l of listeners) {
    try {
      const r: unknown = (l as (this: Emitter, e: unknown) => unknown).call(emitter, ev);
      if (r !== null && typeof r === 'object' && typeof (r as Promise<unknown>).then === 'function') {
        (r as Promise<unknown>).then(undefined, (e: unknown) => report(type, e));
      }
    } catch (e) {
      report(type, e);
    }
  }
}

/** Events a `events()` iterator buffers by default before it drops new ones. */
export const DEFAULT_HIGH_WATER_MARK = 65536;

/** An async iterator over events; see `Client.events()`. */
export class EventIterator<T> implements AsyncIterableIterator<T> {
  private queue: T[] = [];
  private head = 0;
  private waiting: ((r: IteratorResult<T>) => void)[] = [];
  private ended = false;
  /** Events dropped because more than `highWaterMark` were waiting to be read. */
  dropped = 0;

  constructor(
    private readonly highWaterMark: number,
    private readonly onEnd: (it: EventIterator<T>) => void,
  ) {}

  /** @internal */
  push(ev: T): void {
    if (this.ended) return;
    const w = this.waiting.shift();
    if (w) {
      w({ value: ev, done: false });
      return;
    }
    if (this.queue.length - this.head >= this.highWaterMark) {
      this.dropped++;
      return;
    }
    this.queue.push(ev);
  }

  /** @internal Ends the iteration after the events already queued. */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    for (const w of this.waiting.splice(0)) w({ value: undefined, done: true });
    this.onEnd(this);
  }

  next(): Promise<IteratorResult<T>> {
    if (this.head < this.queue.length) {
      const value = this.queue[this.head++] as T;
      if (this.head > 1024 && this.head * 2 > this.queue.length) {
        this.queue = this.queue.slice(this.head);
        this.head = 0;
      }
      return Promise.resolve({ value, done: false });
    }
    if (this.ended) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  /** Stops the iteration (called by `break` in `for await`). Queued events are discarded. */
  return(): Promise<IteratorResult<T>> {
    this.queue = [];
    this.head = 0;
    this.end();
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<T> {
    return this;
  }
}

/**
 * The listener arguments of an event map for Node's generic `EventEmitter<T>`: each event
 * passes its one event object (none for `undefined`, as `'close'`).
 */
export type EmitterArgs<E> = { [K in keyof E]: E[K] extends undefined ? [] : [E[K]] };
