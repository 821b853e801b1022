// Argument checks shared by the public classes. A value of the wrong type is a `TypeError`
// (code ERR_INVALID_ARG_TYPE); a value of the right type that is out of range or malformed is
// a `RangeError` (ERR_OUT_OF_RANGE for numbers, ERR_INVALID_ARG_VALUE otherwise). The limits
// are the core's, read from the native addon (defined once, in the core): names of locks,
// elections and groups 1..=1024 bytes, ids and client names up to 256 bytes, endpoints up
// to 256 bytes, no NUL, valid Unicode (no lone surrogate); durations from 0 to a year.

import { invalidType, invalidValue, outOfRange } from './errors';
import { native } from './native';

const table = native.limits();

/** A limit of the core's table, by its name there (never a number copied here). */
function limit(name: string): number {
  const v = table[name];
  if (v === undefined) throw new Error(`tenure: the native addon has no limit named ${name}`);
  return v;
}

/**
 * The core's limits (`tenure::limits::LIMITS`), with camelCase names: `nameBytes`,
 * `idBytes`, `ttlMinMs`, `timeoutMaxMs`, `waitersPerLock`, ... Read-only.
 */
export const limits: Readonly<Record<string, number>> = Object.freeze(
  Object.fromEntries(Object.entries(table).map(([k, v]) => [k.replace(/_([a-z])/g, (_m, c: string) => c.toUpperCase()), v])),
);

/** Longest lock, election or group name, in UTF-8 bytes. */
export const MAX_NAME_BYTES = limit('name_bytes');
/** Longest candidate or member id, in UTF-8 bytes. */
export const MAX_ID_BYTES = limit('id_bytes');
/** Longest endpoint (`host:port`), in UTF-8 bytes. */
export const MAX_ENDPOINT_BYTES = limit('endpoint_bytes');
/** Longest client name, in UTF-8 bytes. */
export const MAX_CLIENT_NAME_BYTES = limit('client_name_bytes');
/** Longest failure-detector process, peer or network name, in UTF-8 bytes. */
export const MAX_DETECTOR_NAME_BYTES = limit('detector_name_bytes');
/** Longest duration accepted, in milliseconds (a year). */
export const MAX_MS = limit('timeout_max_ms');
/** Shortest and longest session TTL, in milliseconds. */
export const MIN_TTL_MS = limit('ttl_min_ms');
export const MAX_TTL_MS = limit('ttl_max_ms');

/** A UTF-16 code unit that is half of a surrogate pair without its other half. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

export function string(what: string, v: unknown, maxBytes: number): string {
  if (typeof v !== 'string') throw invalidType(what, 'a string', v);
  if (v.length === 0) throw invalidValue(what, 'must not be empty');
  // A lone surrogate has no UTF-8 form: passing it on would turn it into U+FFFD, so that two
  // different strings ('a\uD800', 'a\uDBFF') would name the same lock. Refuse it instead.
  const lone = LONE_SURROGATE.exec(v);
  if (lone) {
    const unit = lone[0].charCodeAt(0).toString(16).toUpperCase();
    throw invalidValue(what, `must be valid Unicode; it has a lone surrogate (U+${unit}) at index ${lone.index}`);
  }
  if (v.includes('\0')) throw invalidValue(what, 'must not contain a NUL character');
  const n = Buffer.byteLength(v, 'utf8');
  if (n > maxBytes) throw invalidValue(what, `is ${n} bytes long; the limit is ${maxBytes}`);
  return v;
}

export function name(what: string, v: unknown): string {
  return string(what, v, MAX_NAME_BYTES);
}

export function id(what: string, v: unknown): string {
  return string(what, v, MAX_ID_BYTES);
}

/** `host:port`. */
export function endpoint(what: string, v: unknown): string {
  const s = string(what, v, MAX_ENDPOINT_BYTES);
  if (!/^.+:\d+$/.test(s)) throw invalidValue(what, `must be host:port; received ${JSON.stringify(s)}`);
  return s;
}

/** A duration in milliseconds within `min..=max`; `Infinity` is `max` when allowed. */
export function ms(what: string, v: unknown, opts: { min?: number; max?: number; infinity?: boolean } = {}): number {
  const min = opts.min ?? 0;
  const max = opts.max ?? MAX_MS;
  if (typeof v !== 'number') throw invalidType(what, 'a number of milliseconds', v);
  if (v === Infinity && opts.infinity) return max;
  if (Number.isNaN(v) || v < min || v > max) {
    throw outOfRange(what, `a number of milliseconds from ${min} to ${max}${opts.infinity ? ' or Infinity' : ''}`, v);
  }
  return v;
}

export function bool(what: string, v: unknown): boolean {
  if (typeof v !== 'boolean') throw invalidType(what, 'a boolean', v);
  return v;
}

export function integer(what: string, v: unknown): number {
  if (typeof v !== 'number') throw invalidType(what, 'an integer', v);
  if (!Number.isSafeInteger(v)) throw outOfRange(what, 'a safe integer', v);
  return v;
}

export function oneOf<T extends string>(what: string, v: unknown, allowed: readonly T[]): T {
  if (typeof v !== 'string') throw invalidType(what, 'a string', v);
  if (!(allowed as readonly string[]).includes(v)) {
    throw invalidValue(what, `must be one of ${allowed.map((a) => `'${a}'`).join(', ')}; received ${JSON.stringify(v)}`);
  }
  return v as T;
}

/**
 * An options object (or undefined): checks it is a plain object and has no unknown keys, so
 * a misspelt option (say `timeout` for `timeoutMs`) is an error instead of a silent default.
 */
export function options<K extends string>(what: string, v: unknown, keys: readonly K[]): Partial<Record<K, unknown>> {
  if (v === undefined) return {};
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw invalidType(what, 'an object', v);
  for (const k of Object.keys(v)) {
    if (!(keys as readonly string[]).includes(k)) {
      throw invalidValue(what, `has an unknown option '${k}'; the options are ${keys.join(', ')}`);
    }
  }
  return v as Partial<Record<K, unknown>>;
}

/** An optional value: checked by `check` unless undefined. */
export function opt<T>(v: unknown, check: (v: unknown) => T): T | undefined {
  return v === undefined ? undefined : check(v);
}
