// The failure detector: heartbeats over UDP on one or several networks, telling a dead
// process from a broken network.

import { EventEmitter } from 'node:events';
import { call, closedError, fromNative, invalidType, invalidValue } from './errors';
import {
  DEFAULT_HIGH_WATER_MARK,
  deliver,
  EventIterator,
  type DetectorEvent,
  type NetworkDownEvent,
  type NetworkUpEvent,
  type PeerRecoveredEvent,
  type PeerSuspectedEvent,
  type EmitterArgs,
} from './events';
import { KeepAlive } from './keepalive';
import { native, type NativeDetector, type NativeDetectorConfig, type RawEvent } from './native';
import { Router } from './router';
import * as v from './validate';

/** Longest process, peer or network name, in bytes (it must fit a heartbeat datagram). */
const MAX_DETECTOR_NAME = v.MAX_DETECTOR_NAME_BYTES;

/** A peer and its address on one network. */
export interface PeerAddress {
  /** The peer's process name (the `name` it started its detector with). */
  name: string;
  /** Its `host:port` on this network. */
  address: string;
}

/** One network of a detector: a local socket and the peers' addresses on it. */
export interface NetworkOptions {
  /** Network name (used in events). */
  name: string;
  /** Local `host:port` to bind; port 0 picks one (see {@link Detector.localAddress}). */
  bind: string;
  /** Every peer with its address on this network; every network lists the same peers. */
  peers: PeerAddress[];
}

/** Options of {@link Detector.start}. */
export interface DetectorOptions {
  /** This process's name, sent in its heartbeats. */
  name: string;
  /** Heartbeat interval in milliseconds (1 to 60 000); also this process's sending interval. */
  intervalMs: number;
  /** The networks, 1 to 8. */
  networks: NetworkOptions[];
  /** How a silence is judged: `'adaptive'` timeout (default), `'phi'` accrual, or a `'fixed'` timeout. */
  estimator?: 'adaptive' | 'phi' | 'fixed';
  /** Threshold of the phi accrual estimator (default 8). */
  phiThreshold?: number;
  /** Timeout of the fixed estimator in milliseconds (default three intervals). */
  fixedTimeoutMs?: number;
  /** A network with no peer heard for this long is down, in milliseconds (default four intervals). */
  networkFailureLimitMs?: number;
}

/** A snapshot of a detector's state. */
export interface DetectorStatus {
  networks: { name: string; down: boolean; silentForMs: number }[];
  peers: {
    name: string;
    processSuspected: boolean;
    links: {
      network: string;
      heartbeats: number;
      silentForMs: number;
      timeoutMs: number;
      phi: number;
      silent: boolean;
      pathSuspected: boolean;
    }[];
  }[];
}

/** Datagram counters of a detector. */
export interface DetectorCounters {
  /** Heartbeats sent (one per peer per network per round). */
  sent: number;
  /** Sends the operating system refused. */
  sendErrors: number;
  /** Valid heartbeats from known peers. */
  received: number;
  /** Datagrams ignored: malformed, from an unknown sender, or late duplicates. */
  rejected: number;
}

/** The events of a {@link Detector}. */
export interface DetectorEvents {
  peerSuspected: PeerSuspectedEvent;
  peerRecovered: PeerRecoveredEvent;
  networkDown: NetworkDownEvent;
  networkUp: NetworkUpEvent;
  /** The detector is closed and every event it had was delivered. */
  close: undefined;
}

function detectorName(what: string, x: unknown): string {
  return v.string(what, x, MAX_DETECTOR_NAME);
}

function array(what: string, x: unknown): unknown[] {
  if (!Array.isArray(x)) throw invalidType(what, 'an array', x);
  if (x.length === 0) throw invalidValue(what, 'must not be empty');
  return x;
}

function config(options: unknown): NativeDetectorConfig {
  if (options === undefined) throw invalidType('options', 'an object', options);
  const o = v.options('options', options, [
    'name',
    'intervalMs',
    'networks',
    'estimator',
    'phiThreshold',
    'fixedTimeoutMs',
    'networkFailureLimitMs',
  ] as const);
  const cfg: NativeDetectorConfig = {
    name: detectorName('options.name', o.name),
    intervalMs: v.ms('options.intervalMs', o.intervalMs, { min: 1, max: 60_000 }),
    networks: array('options.networks', o.networks).map((n, i) => {
      const w = `options.networks[${i}]`;
      if (n === undefined) throw invalidType(w, 'an object', n);
      const no = v.options(w, n, ['name', 'bind', 'peers'] as const);
      return {
        name: detectorName(`${w}.name`, no.name),
        bind: v.endpoint(`${w}.bind`, no.bind),
        peers: array(`${w}.peers`, no.peers).map((p, j) => {
          const pw = `${w}.peers[${j}]`;
          if (p === undefined) throw invalidType(pw, 'an object', p);
          const po = v.options(pw, p, ['name', 'address'] as const);
          return { name: detectorName(`${pw}.name`, po.name), address: v.endpoint(`${pw}.address`, po.address) };
        }),
      };
    }),
  };
  const est = v.opt(o.estimator, (x) => v.oneOf('options.estimator', x, ['adaptive', 'phi', 'fixed'] as const));
  if (est !== undefined) cfg.estimator = est;
  if (o.phiThreshold !== undefined) {
    if (typeof o.phiThreshold !== 'number') throw invalidType('options.phiThreshold', 'a number', o.phiThreshold);
    cfg.phiThreshold = o.phiThreshold;
  }
  const fixed = v.opt(o.fixedTimeoutMs, (x) => v.ms('options.fixedTimeoutMs', x, { min: 1 }));
  if (fixed !== undefined) cfg.fixedTimeoutMs = fixed;
  const limit = v.opt(o.networkFailureLimitMs, (x) => v.ms('options.networkFailureLimitMs', x, { min: 1 }));
  if (limit !== undefined) cfg.networkFailureLimitMs = limit;
  return cfg;
}

const CLOSE_MARKER_WAIT_MS = 3000;

/**
 * A running failure detector. Heartbeats and detection run on a native thread; events
 * (`'peerSuspected'`, `'peerRecovered'`, `'networkDown'`, `'networkUp'`, then `'close'`)
 * come to listeners and to `for await (const ev of detector.events())`. An open detector keeps
 * the process alive until {@link Detector.close} (or {@link Detector.unref}).
 */
export class Detector extends EventEmitter<EmitterArgs<DetectorEvents>> {
  #native: NativeDetector;
  #keepAlive = new KeepAlive();
  #iterators = new Set<EventIterator<DetectorEvent>>();
  #closing: Promise<void> | null = null;
  #markerSeen!: () => void;
  #marker = new Promise<void>((resolve) => {
    this.#markerSeen = resolve;
  });

  private constructor(n: NativeDetector, router: Router) {
    super();
    this.#native = n;
    router.attach((ev) => this.#receive(ev));
  }

  /** Checks the configuration, binds one UDP socket per network and starts heartbeating. */
  static async start(options: DetectorOptions): Promise<Detector> {
    const cfg = config(options);
    const router = new Router();
    const n = await call(native.startDetector(cfg, router.callback));
    return new Detector(n, router);
  }

  #receive(ev: RawEvent): void {
    if (ev.type === 'close') {
      this.#markerSeen();
      return;
    }
    deliver(this, ev.type, ev);
    for (const it of this.#iterators) it.push(ev as unknown as DetectorEvent);
  }

  #checkOpen(): void {
    if (this.#closing) throw closedError('detector');
  }

  /** A snapshot of the detector's state. */
  status(): DetectorStatus {
    this.#checkOpen();
    return this.#native.status() as DetectorStatus;
  }

  /** Datagram counters. */
  counters(): DetectorCounters {
    const [sent = 0, sendErrors = 0, received = 0, rejected = 0] = this.#native.counters();
    return { sent, sendErrors, received, rejected };
  }

  /** The address a network's socket is bound to, or null for an unknown network. */
  localAddress(network: string): string | null {
    detectorName('network', network);
    this.#checkOpen();
    return this.#native.localAddress(network);
  }

  /**
   * Switches sending on one network off or on again (maintenance, fault drills): peers then
   * see this process silent on that network only. Receiving goes on.
   */
  setSending(network: string, on: boolean): void {
    detectorName('network', network);
    v.bool('on', on);
    this.#checkOpen();
    try {
      this.#native.setSending(network, on);
    } catch (e) {
      throw fromNative(e);
    }
  }

  /** Events dropped because this process fell more than 65536 events behind. */
  get droppedEvents(): number {
    return this.#native.droppedEvents;
  }

  /** True once {@link Detector.close} was called. */
  get closed(): boolean {
    return this.#closing !== null;
  }

  /** Every event of this detector as an async iterator; it ends when the detector is closed. */
  events(options?: { highWaterMark?: number }): AsyncIterableIterator<DetectorEvent> {
    const o = v.options('options', options, ['highWaterMark'] as const);
    const hwm = v.opt(o.highWaterMark, (x) => v.integer('options.highWaterMark', x)) ?? DEFAULT_HIGH_WATER_MARK;
    const it = new EventIterator<DetectorEvent>(Math.max(1, hwm), (x) => this.#iterators.delete(x));
    if (this.#closing) it.end();
    else this.#iterators.add(it);
    return it;
  }

  /** Stops heartbeating and closes the sockets; resolves after the last event (`'close'` last). Idempotent. */
  close(): Promise<void> {
    if (!this.#closing) {
      this.#keepAlive.hold();
      this.#closing = this.#doClose();
    }
    return this.#closing;
  }

  async #doClose(): Promise<void> {
    try {
      await call(this.#native.stop());
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        this.#marker,
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, CLOSE_MARKER_WAIT_MS);
        }),
      ]);
      clearTimeout(timer);
    } finally {
      for (const it of [...this.#iterators]) it.end();
      this.#keepAlive.release();
      deliver(this, 'close', undefined);
    }
  }

  /** Lets the process exit while the detector runs. */
  unref(): this {
    this.#keepAlive.unref();
    return this;
  }

  /** Keeps the process alive while the detector runs (the default). */
  ref(): this {
    this.#keepAlive.ref();
    return this;
  }
}
