// Errors of the public API: `TenureError` with a stable `.code` for what went wrong in the
// service or the session, and Node's own `TypeError`/`RangeError` for bad arguments.

/** The stable codes of {@link TenureError}. */
export type TenureErrorCode =
  | 'ERR_TENURE_LOCK_TIMEOUT'
  | 'ERR_TENURE_LOCK_HELD'
  | 'ERR_TENURE_LOCK_LOST'
  | 'ERR_TENURE_TIMEOUT'
  | 'ERR_TENURE_CLOSED'
  | 'ERR_TENURE_SESSION_EXPIRED'
  | 'ERR_TENURE_DATA_LOST'
  | 'ERR_TENURE_CONNECTION_FAILED'
  | 'ERR_TENURE_LIMIT'
  | 'ERR_TENURE_REJECTED'
  | 'ERR_TENURE_IO'
  | 'ERR_TENURE_CANCELLED'
  | 'ERR_TENURE_PANIC'
  | 'ERR_TENURE_OTHER';

/** The codes by name, for comparisons without string literals: `err.code === codes.LOCK_TIMEOUT`. */
export const codes = Object.freeze({
  /** `lock()` was not granted within `timeoutMs`; no lock is held. */
  LOCK_TIMEOUT: 'ERR_TENURE_LOCK_TIMEOUT',
  /** This client already holds the lock it asked for. */
  LOCK_HELD: 'ERR_TENURE_LOCK_HELD',
  /** `release()` of a lock that was lost (see its `lostReason`). */
  LOCK_LOST: 'ERR_TENURE_LOCK_LOST',
  /** A wait other than a lock's timed out (`requestElection`). */
  TIMEOUT: 'ERR_TENURE_TIMEOUT',
  /** The object, or the client it belongs to, is closed. */
  CLOSED: 'ERR_TENURE_CLOSED',
  /** The session expired while the call was waiting. */
  SESSION_EXPIRED: 'ERR_TENURE_SESSION_EXPIRED',
  /** The service lost its state (its incarnation changed) while the call was waiting. */
  DATA_LOST: 'ERR_TENURE_DATA_LOST',
  /** No server could be reached, or it did not answer. */
  CONNECTION_FAILED: 'ERR_TENURE_CONNECTION_FAILED',
  /** A limit of the service or of this package was reached. */
  LIMIT: 'ERR_TENURE_LIMIT',
  /** The server refused the request. */
  REJECTED: 'ERR_TENURE_REJECTED',
  /** An operating-system error (binding a socket, the data directory). */
  IO: 'ERR_TENURE_IO',
  /** The call was given up before it completed. */
  CANCELLED: 'ERR_TENURE_CANCELLED',
  /** A bug in tenure: a native call panicked. */
  PANIC: 'ERR_TENURE_PANIC',
  /** An error kind newer than this package. */
  OTHER: 'ERR_TENURE_OTHER',
} as const satisfies Record<string, TenureErrorCode>);

/** An error of the tenure service or session. Check `.code`, never the message. */
export class TenureError extends Error {
  /** The stable code. */
  readonly code: TenureErrorCode;

  constructor(code: TenureErrorCode, message: string) {
    super(message);
    this.code = code;
  }

  override get name(): string {
    return 'TenureError';
  }
}

type CodedError<E extends Error> = E & { code: string };

function coded<E extends Error>(err: E, code: string): CodedError<E> {
  Object.defineProperty(err, 'code', { value: code, enumerable: true, writable: true, configurable: true });
  return err as CodedError<E>;
}

/** A `TypeError` with Node's code for an argument of the wrong type. */
export function invalidType(what: string, expected: string, actual: unknown): TypeError {
  return coded(new TypeError(`${what} must be ${expected}; received ${describe(actual)}`), 'ERR_INVALID_ARG_TYPE');
}

/** A `RangeError` for an argument of the right type and a wrong value. */
export function invalidValue(what: string, why: string): RangeError {
  return coded(new RangeError(`${what} ${why}`), 'ERR_INVALID_ARG_VALUE');
}

/** A `RangeError` with Node's code for a number out of range. */
export function outOfRange(what: string, range: string, actual: unknown): RangeError {
  return coded(new RangeError(`${what} must be ${range}; received ${describe(actual)}`), 'ERR_OUT_OF_RANGE');
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  switch (typeof v) {
    case 'string':
      return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}...` : v);
    case 'number':
    case 'bigint':
    case 'boolean':
      return `${typeof v} ${String(v)}`;
    case 'undefined':
      return 'undefined';
    case 'function':
      return 'a function';
    default:
      return `an instance of ${(v as object).constructor?.name ?? 'Object'}`;
  }
}

const TAGGED = /^\[([A-Z_]+)\] ([\s\S]*)$/;

/** Turns an error of the native layer into the public error it stands for. */
export function fromNative(e: unknown): unknown {
  if (!(e instanceof Error)) return e;
  const m = TAGGED.exec(e.message);
  if (!m) return e;
  const code = m[1] ?? '';
  const message = m[2] ?? '';
  if (code === 'ERR_TENURE_INVALID_ARGUMENT') {
    return coded(new RangeError(message), 'ERR_INVALID_ARG_VALUE');
  }
  return new TenureError(code as TenureErrorCode, message);
}

/** Awaits a native promise, converting its rejection. */
export async function call<T>(p: Promise<T>): Promise<T> {
  try {
    return await p;
  } catch (e) {
    throw fromNative(e);
  }
}

/** The error for a call on something closed. */
export function closedError(what: string): TenureError {
  return new TenureError('ERR_TENURE_CLOSED', `the ${what} is closed`);
}
