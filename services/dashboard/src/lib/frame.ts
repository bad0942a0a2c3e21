// Coalescing per animation frame: updates are gathered and handed to `flush` at most once a frame,
// keyed updates keeping only the newest value per key.

export type Scheduler = (cb: (t: number) => void) => unknown;

const defaultScheduler: Scheduler = (cb) =>
  typeof requestAnimationFrame === 'function' ? requestAnimationFrame(cb) : setTimeout(() => cb(performance.now()), 16);

export class Coalescer<K, V> {
  private pending = new Map<K, V>();
  private scheduled = false;
  /** Updates received and updates handed on (the difference was coalesced away). */
  received = 0;
  flushed = 0;
  frames = 0;

  constructor(
    private flush: (batch: Map<K, V>, t: number) => void,
    private schedule: Scheduler = defaultScheduler,
  ) {}

  push(key: K, value: V): void {
    this.received += 1;
    this.pending.set(key, value);
    if (!this.scheduled) {
      this.scheduled = true;
      this.schedule((t) => this.run(t));
    }
  }

  private run(t: number): void {
    this.scheduled = false;
    const batch = this.pending;
    this.pending = new Map();
    this.frames += 1;
    this.flushed += batch.size;
    if (batch.size) this.flush(batch, t);
  }
}

/** Like [`Coalescer`] for updates that must all be applied, in order (cluster deltas). */
export class FrameQueue<V> {
  private pending: V[] = [];
  private scheduled = false;
  frames = 0;

  constructor(
    private flush: (batch: V[], t: number) => void,
    private schedule: Scheduler = defaultScheduler,
  ) {}

  push(v: V): void {
    this.pending.push(v);
    if (!this.scheduled) {
      this.scheduled = true;
      this.schedule((t) => {
        this.scheduled = false;
        const batch = this.pending;
        this.pending = [];
        this.frames += 1;
        if (batch.length) this.flush(batch, t);
      });
    }
  }
}

/** A list capped at `max` entries, newest first. */
export function capFront<T>(list: T[], item: T, max: number): T[] {
  const next = [item, ...list];
  if (next.length > max) next.length = max;
  return next;
}
