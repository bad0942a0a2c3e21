// The dispatch map's moving carts, drawn on a canvas: the work is split so that what a frame does
// is a few multiplications per cart. When a cart's update is applied (once per update, in the
// coalesced flush) its *track* is computed: the points of the path it drives and the driving
// seconds left at each, from the facility (hop seconds and shortest paths cached per facility).
// A frame then only places each cart on its track by the time left to its eta (`placeAll`),
// fans out carts resting at the same node, and draws a square per cart, grouped by status colour. Hit-testing
// (hover, selection) uses the positions of the last frame. No DOM here: tested with Vitest.

import type { FEdge, Pt } from './layout';

/** The fields of a cart the map needs. */
export interface CartLike {
  cart_id: string;
  status: string;
  location: string;
  home: string;
  request_id: string | null;
  route: string[] | null;
  eta: string | null;
}

/** Where a cart is drawn over time: a fixed point, or points along a path with an eta. */
export interface Track {
  /** x, y of each point of the path (one point: resting, or no path known); shared by the
   * tracks of every cart driving that path, never written. */
  xs: Float64Array;
  ys: Float64Array;
  /** Driving seconds from each point to the end of the path (`left[last] = 0`). */
  left: Float64Array;
  /** Wall-clock ms of arrival at the end (NaN: not moving). */
  etaMs: number;
  /** Resting at `location` (fanned out with the other carts resting there). */
  resting: boolean;
  location: string;
}

/** The facility as the map needs it, with the hop seconds and shortest paths cached. */
export class Geometry {
  private hop = new Map<string, number>();
  private adj = new Map<string, Array<[string, number]>>();
  private paths = new Map<string, string[] | null>();
  /** Points and seconds left of the paths carts drive, shared by the carts' tracks (read-only). */
  private shapes = new Map<string, { xs: Float64Array; ys: Float64Array; left: Float64Array } | null>();

  constructor(
    readonly pos: Map<string, Pt>,
    edges: FEdge[],
  ) {
    for (const e of edges) {
      this.hop.set(e.from + '\u0000' + e.to, e.seconds);
      this.hop.set(e.to + '\u0000' + e.from, e.seconds);
      (this.adj.get(e.from) ?? this.adj.set(e.from, []).get(e.from)!).push([e.to, e.seconds]);
      (this.adj.get(e.to) ?? this.adj.set(e.to, []).get(e.to)!).push([e.from, e.seconds]);
    }
  }

  /** The points of `path` and the driving seconds left at each, computed once per path (`key`
   * names it); `null` when a point is not on the map. */
  shape(key: string, path: () => string[] | null): { xs: Float64Array; ys: Float64Array; left: Float64Array } | null {
    const known = this.shapes.get(key);
    if (known !== undefined) return known;
    const p = path();
    const pts = p?.map((id) => this.pos.get(id));
    let out = null;
    if (p && pts && pts.length > 0 && !pts.some((q) => !q)) {
      const n = pts.length;
      const xs = new Float64Array(n), ys = new Float64Array(n), left = new Float64Array(n);
      for (let i = 0; i < n; i++) { xs[i] = pts[i]!.x; ys[i] = pts[i]!.y; }
      for (let i = n - 2; i >= 0; i--) left[i] = left[i + 1] + this.hopSeconds(p[i], p[i + 1]);
      out = { xs, ys, left };
    }
    if (this.shapes.size >= 20_000) this.shapes.clear();
    this.shapes.set(key, out);
    return out;
  }

  /** Driving seconds of one hop (1 s where the facility has no such edge, as `hopSeconds`). */
  hopSeconds(a: string, b: string): number {
    return this.hop.get(a + '\u0000' + b) ?? 1;
  }

  /** Shortest path by driving seconds (Dijkstra, as `shortestPath`), cached. */
  shortestPath(from: string, to: string): string[] | null {
    if (from === to) return [from];
    const key = from + '\u0000' + to;
    if (this.paths.has(key)) return this.paths.get(key)!;
    const dist = new Map<string, number>([[from, 0]]);
    const prev = new Map<string, string>();
    const done = new Set<string>();
    let found = false;
    for (;;) {
      let best: string | null = null;
      for (const [n, d] of dist) if (!done.has(n) && (best === null || d < dist.get(best)!)) best = n;
      if (best === null) break;
      if (best === to) { found = true; break; }
      done.add(best);
      for (const [m, s] of this.adj.get(best) ?? []) {
        const nd = dist.get(best)! + s;
        if (nd < (dist.get(m) ?? Infinity)) { dist.set(m, nd); prev.set(m, best); }
      }
    }
    let path: string[] | null = null;
    if (found) {
      path = [to];
      while (path[0] !== from) path.unshift(prev.get(path[0])!);
    }
    this.paths.set(key, path);
    return path;
  }
}

function fixed(g: Geometry, location: string, resting: boolean): Track | null {
  const shape = g.shape('p\u0001' + location, () => [location]);
  return shape && { ...shape, etaMs: NaN, resting, location };
}

/**
 * The track of a cart: in FLIGHT with an eta it drives the rest of its route (from where it is
 * to the dock), or home once it has docked for its request (`dockedFor`: the request it docked
 * for) or has no route; otherwise it rests at its location. `null`: its location is not on the
 * map.
 */
export function trackOf(c: CartLike, g: Geometry, dockedFor: string | undefined): Track | null {
  const etaMs = c.eta ? Date.parse(c.eta) : NaN;
  if (c.status !== 'FLIGHT' || !Number.isFinite(etaMs)) return fixed(g, c.location, c.status !== 'FLIGHT');
  const route = c.route;
  const dock = route?.[route.length - 1];
  const home = dockedFor === c.request_id || !route || c.location === dock;
  const shape = home
    ? g.shape('h\u0001' + c.location + '\u0001' + c.home, () => g.shortestPath(c.location, c.home))
    : g.shape('r\u0001' + c.location + '\u0001' + route!.join('\u0000'), () => {
        const i = route!.indexOf(c.location);
        return i >= 0 ? route!.slice(i) : g.shortestPath(c.location, dock!);
      });
  if (!shape) return fixed(g, c.location, false);
  const { xs, ys, left } = shape;
  return { xs, ys, left, etaMs, resting: false, location: c.location };
}

/**
 * Where on its track a cart is at `nowMs`: the point whose driving seconds left equal the time
 * left to its eta (clamped to the track), the same point as `interpolate`. Writes `out`.
 */
export function place(t: Track, nowMs: number, out: { x: number; y: number }): void {
  const n = t.xs.length;
  if (n === 1 || !Number.isFinite(t.etaMs)) { out.x = t.xs[0]; out.y = t.ys[0]; return; }
  const total = t.left[0];
  const left = Math.max(0, Math.min(total, (t.etaMs - nowMs) / 1000));
  // Walk backwards from the end: the hop (i, i+1) where left[i+1] <= left <= left[i].
  for (let i = n - 2; i >= 0; i--) {
    const hop = t.left[i] - t.left[i + 1];
    if (left - t.left[i + 1] <= hop) {
      const f = hop === 0 ? 1 : 1 - (left - t.left[i + 1]) / hop;
      out.x = t.xs[i] + (t.xs[i + 1] - t.xs[i]) * f;
      out.y = t.ys[i] + (t.ys[i + 1] - t.ys[i]) * f;
      return;
    }
  }
  out.x = t.xs[0]; out.y = t.ys[0];
}

/** The offset of the k-th cart resting at a node: fanned out to the node's upper right, 6 a row. */
export function restOffset(k: number): Pt {
  return { x: 12 + (k % 6) * 7, y: -(10 + Math.floor(k / 6) * 7) };
}

/** Every cart on the map, in arrays a frame walks without allocating. */
export class CartLayer {
  ids: string[] = [];
  tracks: Track[] = [];
  /** Index into `statuses` of each cart's status (`statuses.length`: another status). */
  color: Uint8Array = new Uint8Array(64);
  xs: Float64Array = new Float64Array(64);
  ys: Float64Array = new Float64Array(64);
  private index = new Map<string, number>();
  /** Offsets of resting carts, recomputed when a cart was set or removed. */
  private offX: Float64Array = new Float64Array(64);
  private offY: Float64Array = new Float64Array(64);
  private restDirty = true;
  /** Something changed since the last frame (a cart set or removed): draw even if nothing moves. */
  dirty = true;

  constructor(readonly statuses: string[]) {}

  get size(): number { return this.ids.length; }
  has(id: string): boolean { return this.index.has(id); }

  private grow(n: number): void {
    if (n <= this.xs.length) return;
    const cap = Math.max(n, this.xs.length * 2);
    const g = <T extends Float64Array | Uint8Array>(a: T, make: (n: number) => T): T => { const b = make(cap); b.set(a); return b; };
    this.xs = g(this.xs, (k) => new Float64Array(k));
    this.ys = g(this.ys, (k) => new Float64Array(k));
    this.offX = g(this.offX, (k) => new Float64Array(k));
    this.offY = g(this.offY, (k) => new Float64Array(k));
    this.color = g(this.color, (k) => new Uint8Array(k));
  }

  /** Sets (or, with `null`, removes) the track of a cart with `status`. */
  set(id: string, status: string, track: Track | null): void {
    const i = this.index.get(id);
    this.dirty = true;
    if (!track) { if (i !== undefined) this.remove(id); return; }
    const ci = this.statuses.indexOf(status);
    const col = ci < 0 ? this.statuses.length : ci;
    if (i !== undefined) {
      const was = this.tracks[i];
      this.tracks[i] = track;
      this.color[i] = col;
      if (was.resting || track.resting) this.restDirty = true;
      return;
    }
    const n = this.ids.length;
    this.grow(n + 1);
    this.ids.push(id);
    this.tracks.push(track);
    this.color[n] = col;
    this.index.set(id, n);
    if (track.resting) this.restDirty = true;
  }

  remove(id: string): void {
    const i = this.index.get(id);
    if (i === undefined) return;
    const last = this.ids.length - 1;
    if (i !== last) {
      this.ids[i] = this.ids[last];
      this.tracks[i] = this.tracks[last];
      this.color[i] = this.color[last];
      this.index.set(this.ids[i], i);
    }
    this.ids.pop();
    this.tracks.pop();
    this.index.delete(id);
    this.restDirty = true;
    this.dirty = true;
  }

  clear(): void {
    this.ids = []; this.tracks = []; this.index.clear();
    this.restDirty = true; this.dirty = true;
  }

  private fanOut(): void {
    const k = new Map<string, number>();
    for (let i = 0; i < this.ids.length; i++) {
      const t = this.tracks[i];
      if (!t.resting) { this.offX[i] = 0; this.offY[i] = 0; continue; }
      const j = k.get(t.location) ?? 0;
      k.set(t.location, j + 1);
      const o = restOffset(j);
      this.offX[i] = o.x; this.offY[i] = o.y;
    }
    this.restDirty = false;
  }

  /** Places every cart at `nowMs` (into `xs`, `ys`); true when one is still moving. */
  placeAll(nowMs: number): boolean {
    if (this.restDirty) this.fanOut();
    const p = { x: 0, y: 0 };
    let moving = false;
    for (let i = 0; i < this.ids.length; i++) {
      const t = this.tracks[i];
      place(t, nowMs, p);
      this.xs[i] = p.x + this.offX[i];
      this.ys[i] = p.y + this.offY[i];
      if (t.xs.length > 1 && t.etaMs > nowMs) moving = true;
    }
    return moving;
  }

  /** The cart drawn nearest to (x, y) within `radius` px at the last `placeAll` (of carts as
   * near, the last one set); `null`: none. */
  hit(x: number, y: number, radius: number): string | null {
    let best = -1, bestD = radius * radius;
    for (let i = 0; i < this.ids.length; i++) {
      const dx = this.xs[i] - x, dy = this.ys[i] - y;
      const d = dx * dx + dy * dy;
      if (d <= bestD) { bestD = d; best = i; }
    }
    return best < 0 ? null : this.ids[best];
  }

  /** Where a cart was drawn at the last `placeAll`. */
  at(id: string): Pt | null {
    const i = this.index.get(id);
    return i === undefined ? null : { x: this.xs[i], y: this.ys[i] };
  }
}

/** The minimal 2D context the layer draws with (a real `CanvasRenderingContext2D` in the page). */
export interface Ctx2D {
  fillStyle: string | CanvasGradient | CanvasPattern;
  strokeStyle: string | CanvasGradient | CanvasPattern;
  lineWidth: number;
  setTransform(a: number, b: number, c: number, d: number, e: number, f: number): void;
  clearRect(x: number, y: number, w: number, h: number): void;
  fillRect(x: number, y: number, w: number, h: number): void;
  beginPath(): void;
  moveTo(x: number, y: number): void;
  arc(x: number, y: number, r: number, a0: number, a1: number): void;
  stroke(): void;
}

/**
 * Draws the layer (after `placeAll`) in CSS pixels on a canvas of `dpr` device pixels per CSS
 * pixel: every cart a square of `2r - 1` px on whole pixels, one fill colour set per status
 * (`palette[i]` the colour of `layer.statuses[i]`, then one for any other status), then rings
 * round the hovered and the selected cart. Squares, not circles: Chromium rasterises a canvas
 * on the page's main thread when no GPU is used, and 1,000 anti-aliased circles took about 3 ms
 * a frame there where squares take under 1 ms (headless Chromium, --disable-gpu).
 */
export function drawLayer(ctx: Ctx2D, layer: CartLayer, palette: string[], w: number, h: number, dpr: number, hover: string | null, selected: string | null, r = 4): void {
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  const n = layer.size;
  const side = 2 * r - 1, half = r - 1;
  for (let c = 0; c <= layer.statuses.length; c++) {
    let any = false;
    for (let i = 0; i < n; i++) {
      if (layer.color[i] !== c) continue;
      if (!any) { ctx.fillStyle = palette[c] ?? '#ffffff'; any = true; }
      ctx.fillRect(Math.round(layer.xs[i]) - half, Math.round(layer.ys[i]) - half, side, side);
    }
  }
  for (const [id, col, rr] of [[hover, '#e2e8f0', r + 3], [selected, '#facc15', r + 4]] as const) {
    const p = id ? layer.at(id) : null;
    if (!p) continue;
    ctx.beginPath();
    ctx.moveTo(Math.round(p.x) + 0.5 + rr, Math.round(p.y) + 0.5);
    ctx.arc(Math.round(p.x) + 0.5, Math.round(p.y) + 0.5, rr, 0, Math.PI * 2);
    ctx.strokeStyle = col; ctx.lineWidth = 2; ctx.stroke();
  }
}
