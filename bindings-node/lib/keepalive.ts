// What keeps the process alive while a tenure object is open.
//
// The native layer holds nothing that keeps Node's event loop alive (its event channels are
// weak), so each open Server, Client and Detector holds one of these: a timer that never
// fires, referenced until the object is closed or `unref()` is called. A pending call (a
// Promise returned by any method) keeps the loop alive by itself until it settles.

const NEVER = 2 ** 31 - 1;

function noop(): void {}

export class KeepAlive {
  private timer: NodeJS.Timeout | null = setInterval(noop, NEVER);
  private wanted = true;

  /** Keeps the process alive again (the default). */
  ref(): void {
    this.wanted = true;
    this.timer?.ref();
  }

  /** Lets the process exit while the object is open. */
  unref(): void {
    this.wanted = false;
    this.timer?.unref();
  }

  /** Whether the object keeps the process alive. */
  hasRef(): boolean {
    return this.timer !== null && this.wanted;
  }

  /** Keeps the process alive whatever `unref()` said, while a close finishes. */
  hold(): void {
    this.timer?.ref();
  }

  /** Stops keeping the process alive, for good. */
  release(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}
