// Candidacies and observations of elections.

import type { ClientLink } from './client';
import { type Master, type MasterChangedEvent } from './events';
import { OwnedHandle, PendingWatch } from './handle';
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
export class Election extends OwnedHandle<NativeElection, ElectionEvents> {
  #candidateId: string;

  private constructor(n: NativeElection, candidateId: string, link: ClientLink) {
    super(n, link);
    this.#candidateId = candidateId;
  }

  /** @internal */
  static _new(n: NativeElection, candidateId: string, link: ClientLink): Election {
    return new Election(n, candidateId, link);
  }

  /** The election's name. */
  get name(): string {
    return this.native.name;
  }

  /** This candidate's id. */
  get candidateId(): string {
    return this.#candidateId;
  }

  /** The master as last told, or null. */
  get master(): Master | null {
    return this.native.master.master;
  }

  /** The epoch of the last master change this candidate was told of (0n before any). */
  get epoch(): bigint {
    return this.native.master.epoch;
  }

  /**
   * True while this candidate is the master: designated, not resigned, and the session's
   * lease valid by the client's own deadline.
   */
  get isMaster(): boolean {
    return this.native.isMaster;
  }

  /** The epoch at which this candidate became master, while it is master; use it as a fencing token. */
  get masterEpoch(): bigint | null {
    return this.native.masterEpoch;
  }

  /**
   * Withdraws the candidacy and waits for the service to confirm. A master that resigns
   * hands over to the next candidate at once. Idempotent.
   */
  resign(): Promise<void> {
    return this.end();
  }

  /** @internal */
  protected giveUp(): Promise<void> {
    return this.native.resign();
  }
}

/**
 * An observation of an election without candidacy, from {@link Client.observe}. Emits
 * `'masterChanged'`, first with the current master once {@link Observer.ready}. It carries
 * over to the client's next session after an expiry.
 */
export class Observer extends PendingWatch<NativeObserver, ElectionEvents> {
  #name: string;

  private constructor(name: string, pending: Promise<NativeObserver>, link: ClientLink) {
    super('observer', pending, link);
    this.#name = name;
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
    return (this.native?.master ?? NO_MASTER).master;
  }

  /** The epoch of the last master change (0n before any). */
  get epoch(): bigint {
    return (this.native?.master ?? NO_MASTER).epoch;
  }
}
