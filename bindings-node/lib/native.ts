// The private native addon (`native.node`, built from src/*.rs) and the shape of what it
// exports. Nothing here is public: the package's classes wrap these objects. Every promise
// rejects with an Error whose message starts with `[CODE] `; errors.ts turns it into the
// public error types.

import * as path from 'node:path';
import type { Master, Member } from './events';

/** A master cache as the native layer returns it. */
export interface NativeMasterState {
  master: Master | null;
  epoch: bigint;
}

/** A view as the native layer returns it. */
export interface NativeView {
  number: bigint;
  members: Member[];
}

export type RawEvent = { type: string; [field: string]: unknown };
export type EventCallback = (ev: RawEvent) => void;

export interface NativeServer {
  readonly address: string;
  readonly incarnation: bigint;
  stop(): Promise<void>;
}

export interface NativeClientOptions {
  sessionTtlMs?: number;
  driftRatio?: number;
  safetyMarginMs?: number;
  connectTimeoutMs?: number;
  reopen?: boolean;
  clientName?: string;
  retry?: string;
}

export interface NativeLock {
  readonly name: string;
  readonly fencingToken: bigint;
  readonly held: boolean;
  readonly lostReason: string | null;
  release(): Promise<void>;
}

export interface NativeElection {
  readonly name: string;
  readonly master: NativeMasterState;
  readonly isMaster: boolean;
  readonly masterEpoch: bigint | null;
  subscribe(cb: EventCallback): void;
  resign(): Promise<void>;
}

export interface NativeObserver {
  readonly master: NativeMasterState;
  subscribe(cb: EventCallback): void;
  close(): void;
}

export interface NativeMembership {
  readonly group: string;
  readonly view: NativeView;
  readonly isMember: boolean;
  readonly isFull: boolean;
  subscribe(cb: EventCallback): void;
  reportCheck(ok: boolean): Promise<void>;
  leave(): Promise<void>;
}

export interface NativeGroupWatch {
  readonly view: NativeView;
  subscribe(cb: EventCallback): void;
  close(): void;
}

export interface NativeClient {
  readonly sessionId: bigint;
  readonly incarnation: bigint;
  readonly state: string;
  readonly connected: boolean;
  readonly droppedEvents: number;
  lock(name: string, timeoutMs: number): Promise<NativeLock>;
  tryLock(name: string): Promise<NativeLock | null>;
  revoke(name: string): Promise<void>;
  status(): Promise<unknown>;
  campaign(
    election: string,
    id: string,
    priority: number,
    endpoint: string | null,
    preempt: boolean,
  ): Promise<NativeElection>;
  observe(election: string): Promise<NativeObserver>;
  requestElection(election: string, timeoutMs: number): Promise<NativeMasterState>;
  join(group: string, id: string, probationMs: number, needsCheck: boolean): Promise<NativeMembership>;
  watchGroup(group: string): Promise<NativeGroupWatch>;
  replace(group: string, failed: string, probationary: string): Promise<NativeView>;
  close(): Promise<void>;
}

export interface NativeDetectorConfig {
  name: string;
  intervalMs: number;
  networks: { name: string; bind: string; peers: { name: string; address: string }[] }[];
  estimator?: string;
  phiThreshold?: number;
  fixedTimeoutMs?: number;
  networkFailureLimitMs?: number;
}

export interface NativeDetector {
  status(): unknown;
  counters(): number[];
  localAddress(network: string): string | null;
  setSending(network: string, on: boolean): void;
  readonly droppedEvents: number;
  stop(): Promise<void>;
}

export interface Native {
  /** The core's limits table, by the core's (snake_case) names. */
  limits(): Record<string, number>;
  startServer(listen: string, dataDir: string, durability: string): Promise<NativeServer>;
  connectClient(endpoints: string[], options: NativeClientOptions, onEvent: EventCallback): Promise<NativeClient>;
  startDetector(config: NativeDetectorConfig, onEvent: EventCallback): Promise<NativeDetector>;
  _nowNs(): number;
  _benchTryLockRelease(endpoint: string, name: string, n: number): Promise<number[]>;
  _benchEvents(n: number, gapUs: number, cb: EventCallback): Promise<void>;
}

function load(): Native {
  const file = path.join(__dirname, '..', 'native.node');
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require(file) as Native;
  } catch (e) {
    const err = new Error(
      `tenure: cannot load the native addon ${file}; build it with \`npm run build\` in the package directory`,
    );
    (err as Error & { cause?: unknown }).cause = e;
    throw err;
  }
}

export const native: Native = load();
