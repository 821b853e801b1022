// The two shapes of election and group handles, written once:
// - an owned handle (Election, Membership): the service answered before the object exists;
//   events flow at once; it is given up once (resign, leave), or when the client closes;
// - a pending watch (Observer, GroupWatch): returned at once, ready when the service
//   answers; closing it stops the events.

import { EventEmitter } from 'node:events';
import type { ClientLink } from './client';
import { call, closedError } from './errors';
import { deliver, type EmitterArgs } from './events';

/** A native handle that delivers events (the package's own type, not for applications). */
export interface NativeSource {
  subscribe(cb: (ev: { type: string }) => void): void;
}

/**
 * The part shared by {@link Election} and {@link Membership}: a native handle subscribed at
 * once, and given up at most once.
 */
export abstract class OwnedHandle<N extends NativeSource, E extends object>
  extends EventEmitter<EmitterArgs<E>>
{
  /** @internal */
  protected readonly native: N;
  #link: ClientLink;
  #ending: Promise<void> | null = null;

  /** @internal */
  protected constructor(n: N, link: ClientLink) {
    super();
    this.native = n;
    this.#link = link;
    n.subscribe((ev) => deliver(this as unknown as EventEmitter, ev.type, ev));
  }

  /** The native call that gives the handle up (resign, leave). @internal */
  protected abstract giveUp(): Promise<void>;

  /** Gives the handle up the first time; the same promise afterwards. @internal */
  protected end(): Promise<void> {
    if (!this.#ending) {
      this.#link.forget(this);
      this.#ending = call(this.giveUp());
    }
    return this.#ending;
  }

  /** @internal */
  _clientClosed(): void {
    void this.end().catch(() => {});
  }
}

/** A native watch that can be closed (the package's own type, not for applications). */
export interface NativeWatch extends NativeSource {
  close(): void;
}

/**
 * The part shared by {@link Observer} and {@link GroupWatch}: returned at once, ready when
 * the service answers, closed at most once.
 */
export abstract class PendingWatch<N extends NativeWatch, E extends object>
  extends EventEmitter<EmitterArgs<E>>
{
  #native: N | null = null;
  #ready: Promise<void>;
  #readyAsked = false;
  #closed = false;
  #link: ClientLink;

  /** @internal */
  protected constructor(what: string, pending: Promise<N>, link: ClientLink) {
    super();
    this.#link = link;
    this.#ready = pending.then(
      (n) => {
        if (this.#closed) {
          n.close();
          throw closedError(what);
        }
        this.#native = n;
        n.subscribe((ev) => deliver(this as unknown as EventEmitter, ev.type, ev));
      },
      (e: unknown) => {
        // Closed on purpose before the service answered: not worth a warning.
        const wasClosed = this.#closed;
        this.#closed = true;
        link.forget(this);
        if (!this.#readyAsked && !wasClosed) {
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
    this.#ready.catch(() => {});
  }

  /** The native handle once ready. @internal */
  protected get native(): N | null {
    return this.#native;
  }

  /**
   * Resolves once the service answered and events flow; rejects if the handle could not be
   * set up (when nobody asked for `ready`, that failure is reported with
   * `process.emitWarning`).
   */
  get ready(): Promise<void> {
    this.#readyAsked = true;
    return this.#ready;
  }

  /** True once closed. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Stops the events. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#link.forget(this);
    await this.#ready.catch(() => {});
    this.#native?.close();
  }

  /** @internal */
  _clientClosed(): void {
    void this.close();
  }
}
