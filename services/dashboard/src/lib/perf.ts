// Measurement hooks for the browser benchmark (`make bench-dashboard`), on when the page's URL has
// `?perf=1`: frame intervals from a requestAnimationFrame loop, the JS time each coalesced flush
// took, the JS time of each redraw of the dispatch map's carts, and the wall-clock time at which
// each cart update (by its `seq`) reached the screen (the start of the frame after the one that
// applied it: the applied frame has been painted by then).

const on = typeof location !== 'undefined' && new URLSearchParams(location.search).get('perf') === '1';
const MAX = 200_000;

export const perf = {
  on,
  frames: [] as number[],
  flushMs: [] as number[],
  /** JS time of each redraw of the map's cart layer (placing and drawing every cart). */
  drawMs: [] as number[],
  /** Per cart update: ms from its arrival on the WebSocket to the paint that showed it. */
  pageLagMs: [] as number[],
  /** [seq, wall-clock ms painted] */
  painted: [] as Array<[number, number]>,
  received: 0,
  started: false,
  start(): void {
    if (!on || this.started) return;
    this.started = true;
    let last = performance.now();
    const loop = (t: number) => {
      if (this.frames.length < MAX) this.frames.push(t - last);
      last = t;
      requestAnimationFrame(loop);
    };
    requestAnimationFrame(loop);
  },
  /** `arrived`: when each update reached the page (`performance.now()`), to tell the page's share
   * of the lag (`pageLagMs`: arrival to paint) from the bus's. */
  flushed(ms: number, seqs: number[], arrived?: number[]): void {
    if (!on) return;
    if (this.flushMs.length < MAX) this.flushMs.push(ms);
    requestAnimationFrame(() => {
      const t = performance.now();
      const now = performance.timeOrigin + t;
      for (const s of seqs) if (this.painted.length < MAX) this.painted.push([s, now]);
      if (arrived) for (const a of arrived) if (this.pageLagMs.length < MAX) this.pageLagMs.push(t - a);
    });
  },
  drew(ms: number): void {
    if (on && this.drawMs.length < MAX) this.drawMs.push(ms);
  },
  reset(): void {
    this.frames = [];
    this.flushMs = [];
    this.drawMs = [];
    this.pageLagMs = [];
    this.painted = [];
    this.received = 0;
  },
};

if (on && typeof window !== 'undefined') (window as any).__dashPerf = perf;
