// Candidacies and observations of elections.

import { EventEmitter } from 'node:events';
import type { Child, ClientLink } from './client';
import { call, closedError } from './errors';
import { deliver, type Master, type MasterChangedEvent, type EmitterArgs } from './events';
import type { NativeElection, NativeMasterState, NativeObserver } from './native';

/** The events of an {@link Election} or {@link Observer}. */
export interface ElectionEvents {
  /**
   * The master changed, in strictly increasing epoch order; the first event after the
   * object is created carries the current master (when one is known).
   */
  masterChanged: MasterChangedEvent;
  /** @deprecated The same event as `masterChanged`, under its first name. */
  masterChange: MasterChangedEvent;
}

const NO_MASTER: NativeMasterState = { master: null, epoch: 0n };

/**
 * A candidacy in an election, from {@link Client.campaign}. Emits `'masterChanged'`.
 * It ends with {@link Election.resign}, when the client is closed, or when the session
 * expires.
 */
export class Election extends EventEmitter<EmitterArgs<ElectionEvents>> {
  #native: NativeElection;
  #candidateId: string;
  #link: ClientLink;
  #resigning: Promise<void> | null = null;

  private constructor(n: NativeElection, candidateId: string, link: ClientLink) {
    super();
    this.#native = n;
    this.#candidateId = candidateId;
    this.#link = link;
    n.subscribe((ev) => deliver(this, ev.type, ev));
  }

  /** @internal */
  static _new(n: NativeElection, candidateId: string, link: ClientLink): Election {
    return new Election(n, candidateId, link);
  }

  /** The election's name. */
  get name(): string {
    return this.#native.name;
  }

  /** This candidate's id. */
  get candidateId(): string {
    return this.#candidateId;
  }

  /** The master as last told, or null. */
  get master(): Master | null {
    return this.#native.master.master;
  }

  /** The epoch of the last master change this candidate was told of (0n before any). */
  get epoch(): bigint {
    return this.#native.master.epoch;
  }

  /**
   * True while this candidate is the master: designated, not resigned, and the session's
   * lease valid by the client's own deadline.
   */
  get isMaster(): boolean {
    return this.#native.isMaster;
  }

  /** The epoch at which this candidate became master, while it is master; use it as a fencing token. */
  get masterEpoch(): bigint | null {
    return this.#native.masterEpoch;
  }

  /**
   * Withdraws the candidacy and waits for the service to confirm. A master that resigns
   * hands over to the next candidate at once. Idempotent.
   */
  resign(): Promise<void> {
    if (!this.#resigning) {
      this.#link.forget(this);
      this.#resigning = call(this.#native.resign());
    }
    return this.#resigning;
  }

  /** @internal */
  _clientClosed(): void {
    void this.resign().catch(() => {});
  }
}

/**
 * The part shared by the handles that are returned at once and become ready when the
 * service answers (Observer, GroupWatch): readiness, closing, and the subscription.
 * @internal
 */
export class PendingHandle<N extends { close(): void; subscribe(cb: (ev: { type: string }) => void): void }> {
  native: N | null = null;
  readonly ready: Promise<void>;
  readyAsked = false;
  closed = false;

  constructor(what: string, pending: Promise<N>, owner: EventEmitter, link: ClientLink, child: Child) {
    this.ready = pending.then(
      (n) => {
        if (this.closed) {
          n.close();
          throw closedError(what);
        }
        this.native = n;
        n.subscribe((ev) => deliver(owner, ev.type, ev));
      },
      (e: unknown) => {
        // Closed on purpose before the service answered: not worth a warning.
        const wasClosed = this.closed;
        this.closed = true;
        link.forget(child);
        if (!this.readyAsked && !wasClosed) {
          const msg = e instanceof Error ? e.message : String(e);
          process.emitWarning(`tenure: the ${what} could not be set up (${msg}); see its \`ready\` promise`, {
            type: 'TenureWarning',
            code: 'ERR_TENURE_SETUP',
          });
        }
        throw e;
      },
    );
    // A failure is reported through `ready` (or a warning), never as an unhandled rejection.
    this.ready.catch(() => {});
  }

  async close(link: ClientLink, child: Child): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    link.forget(child);
    await this.ready.catch(() => {});
    this.native?.close();
  }
}

/**
 * An observation of an election without candidacy, from {@link Client.observe}. Emits
 * `'masterChanged'`, first with the current master once {@link Observer.ready}. It carries
 * over to the client's next session after an expiry.
 */
export class Observer extends EventEmitter<EmitterArgs<ElectionEvents>> {
  #name: string;
  #handle: PendingHandle<NativeObserver>;
  #link: ClientLink;

  private constructor(name: string, pending: Promise<NativeObserver>, link: ClientLink) {
    super();
    this.#name = name;
    this.#link = link;
    this.#handle = new PendingHandle('observer', pending, this as unknown as EventEmitter, link, this);
  }

  /** @internal */
  static _new(name: string, pending: Promise<NativeObserver>, link: ClientLink): Observer {
    return new Observer(name, pending, link);
  }

  /** The election's name. */
  get name(): string {
    return this.#name;
  }

  /** The master as last told, or null (also before `ready`). */
  get master(): Master | null {
    return (this.#handle.native?.master ?? NO_MASTER).master;
  }

  /** The epoch of the last master change (0n before any). */
  get epoch(): bigint {
    return (this.#handle.native?.master ?? NO_MASTER).epoch;
  }

  /**
   * Resolves once the service answered and events flow; rejects if the observation could not
   * be set up (when nobody asked for `ready`, that failure is reported with
   * `process.emitWarning`).
   */
  get ready(): Promise<void> {
    this.#handle.readyAsked = true;
    return this.#handle.ready;
  }

  /** True once closed. */
  get closed(): boolean {
    return this.#handle.closed;
  }

  /** Stops the observation. Idempotent. */
  close(): Promise<void> {
    return this.#handle.close(this.#link, this);
  }

  /** @internal */
  _clientClosed(): void {
    void this.close();
  }
}
