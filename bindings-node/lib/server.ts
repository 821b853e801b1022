// The embedded coordination server.

import { call } from './errors';
import { KeepAlive } from './keepalive';
import { native, type NativeServer } from './native';
import * as v from './validate';

/** Options of {@link Server.start}. */
export interface ServerOptions {
  /** `host:port` to listen on; port 0 picks a free one. Default `127.0.0.1:7411`. */
  listen?: string;
  /** Directory of the server's state. Default `./tenure-data`. */
  dataDir?: string;
  /**
   * `'fsync'` (default): a change is acknowledged once it is on disk. `'none'`: state in
   * memory only; every start is a new incarnation.
   */
  durability?: 'fsync' | 'none';
}

const SERVER_OPTIONS = ['listen', 'dataDir', 'durability'] as const;

/**
 * A tenure server running inside this process. It keeps the process alive until
 * {@link Server.close} (or {@link Server.unref}).
 */
export class Server {
  #native: NativeServer;
  #keepAlive = new KeepAlive();
  #closing: Promise<void> | null = null;

  private constructor(n: NativeServer) {
    this.#native = n;
  }

  /** Opens the data directory, recovers the state, binds the address and starts serving. */
  static async start(options?: ServerOptions): Promise<Server> {
    const o = v.options('options', options, SERVER_OPTIONS);
    const listen = v.opt(o.listen, (x) => v.endpoint('options.listen', x)) ?? '127.0.0.1:7411';
    const dataDir = v.opt(o.dataDir, (x) => v.string('options.dataDir', x, 4096)) ?? 'tenure-data';
    const durability = v.opt(o.durability, (x) => v.oneOf('options.durability', x, ['fsync', 'none'] as const)) ?? 'fsync';
    const n = await call(native.startServer(listen, dataDir, durability));
    return new Server(n);
  }

  /** The address the server listens on (`host:port`), to give to {@link Client.connect}. */
  get address(): string {
    return this.#native.address;
  }

  /** The service's incarnation token. */
  get incarnation(): bigint {
    return this.#native.incarnation;
  }

  /** True once {@link Server.close} was called. */
  get closed(): boolean {
    return this.#closing !== null;
  }

  /**
   * Stops serving: commits what was applied and closes every connection. Clients keep their
   * sessions until they expire; a restart on the same data directory gives each a grace
   * period of its TTL. Idempotent.
   */
  close(): Promise<void> {
    if (!this.#closing) {
      this.#keepAlive.hold();
      this.#closing = call(this.#native.stop()).finally(() => this.#keepAlive.release());
    }
    return this.#closing;
  }

  /** Lets the process exit while the server runs. */
  unref(): this {
    this.#keepAlive.unref();
    return this;
  }

  /** Keeps the process alive while the server runs (the default). */
  ref(): this {
    this.#keepAlive.ref();
    return this;
  }
}
