// Hands events from a native callback to the object that will own them, which may not exist
// yet: a client's or detector's events start flowing before the promise that creates the
// object has resolved. Until the owner is attached they are buffered, and the buffer is
// flushed on a later turn of the event loop, after the code that awaited the object has
// attached its listeners.

import type { RawEvent } from './native';

export class Router {
  private target: ((ev: RawEvent) => void) | null = null;
  private buffer: RawEvent[] | null = [];

  /** The callback to give to the native layer. */
  readonly callback = (ev: RawEvent): void => {
    try {
      if (this.buffer) this.buffer.push(ev);
      else this.target?.(ev);
    } catch {
      // `target` guards its listeners; nothing may escape into the native layer.
    }
  };

  attach(target: (ev: RawEvent) => void): void {
    this.target = target;
    const early = this.buffer;
    if (!early || early.length === 0) {
      this.buffer = null;
      return;
    }
    setImmediate(() => {
      const b = this.buffer ?? [];
      this.buffer = null;
      for (const ev of b) this.callback(ev);
    });
  }
}
