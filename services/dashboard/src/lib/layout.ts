// Layouts computed in the page: the facility graph has no coordinates, the pipeline graph is a DAG.

export interface FNode { id: string; kind: string }
export interface FEdge { from: string; to: string; seconds: number }
export interface Pt { x: number; y: number }

/** Deterministic pseudo-random numbers (so the same facility always gets the same picture). */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    return s / 4294967296;
  };
}

/**
 * Force-directed layout (Fruchterman-Reingold) into a `w` x `h` box. Storage bays start on the
 * left, docks on the right, junctions between, so the picture reads from where carts load to where
 * they deliver.
 */
export function forceLayout(nodes: FNode[], edges: FEdge[], w = 900, h = 520, iterations = 400): Map<string, Pt> {
  const rand = rng(nodes.length * 7919 + edges.length);
  const pos = new Map<string, Pt>();
  const col = (k: string) => (k === 'storage' ? 0.1 : k === 'dock' ? 0.9 : 0.5);
  for (const n of nodes) pos.set(n.id, { x: col(n.kind) * w + (rand() - 0.5) * w * 0.2, y: rand() * h });
  const area = w * h;
  const k = Math.sqrt(area / Math.max(1, nodes.length)) * 0.8;
  let t = w / 10;
  const ids = nodes.map((n) => n.id);
  for (let it = 0; it < iterations; it++) {
    const disp = new Map<string, Pt>(ids.map((id) => [id, { x: 0, y: 0 }]));
    for (let i = 0; i < ids.length; i++) {
      for (let j = i + 1; j < ids.length; j++) {
        const a = pos.get(ids[i])!, b = pos.get(ids[j])!;
        let dx = a.x - b.x, dy = a.y - b.y;
        const d = Math.max(0.01, Math.hypot(dx, dy));
        const f = (k * k) / d;
        dx /= d; dy /= d;
        const da = disp.get(ids[i])!, db = disp.get(ids[j])!;
        da.x += dx * f; da.y += dy * f; db.x -= dx * f; db.y -= dy * f;
      }
    }
    for (const e of edges) {
      const a = pos.get(e.from), b = pos.get(e.to);
      if (!a || !b) continue;
      let dx = a.x - b.x, dy = a.y - b.y;
      const d = Math.max(0.01, Math.hypot(dx, dy));
      const f = (d * d) / k;
      dx /= d; dy /= d;
      const da = disp.get(e.from)!, db = disp.get(e.to)!;
      da.x -= dx * f; da.y -= dy * f; db.x += dx * f; db.y += dy * f;
    }
    for (const n of nodes) {
      const p = pos.get(n.id)!, d = disp.get(n.id)!;
      // A gentle pull towards the node kind's column keeps storage left and docks right.
      d.x += (col(n.kind) * w - p.x) * 0.05 * k / 10;
      const len = Math.max(0.01, Math.hypot(d.x, d.y));
      p.x += (d.x / len) * Math.min(len, t);
      p.y += (d.y / len) * Math.min(len, t);
      // Room for the labels (centred below each node) inside the box.
      p.x = Math.min(w - 45, Math.max(45, p.x));
      p.y = Math.min(h - 25, Math.max(20, p.y));
    }
    t = Math.max(0.5, t * 0.985);
  }
  return pos;
}

/** Shortest path by driving seconds (Dijkstra); `null` when unreachable. */
export function shortestPath(edges: FEdge[], from: string, to: string): string[] | null {
  if (from === to) return [from];
  const adj = new Map<string, Array<[string, number]>>();
  for (const e of edges) {
    (adj.get(e.from) ?? adj.set(e.from, []).get(e.from)!).push([e.to, e.seconds]);
    (adj.get(e.to) ?? adj.set(e.to, []).get(e.to)!).push([e.from, e.seconds]);
  }
  const dist = new Map<string, number>([[from, 0]]);
  const prev = new Map<string, string>();
  const done = new Set<string>();
  for (;;) {
    let best: string | null = null;
    for (const [n, d] of dist) if (!done.has(n) && (best === null || d < dist.get(best)!)) best = n;
    if (best === null) return null;
    if (best === to) break;
    done.add(best);
    for (const [m, s] of adj.get(best) ?? []) {
      const nd = dist.get(best)! + s;
      if (nd < (dist.get(m) ?? Infinity)) { dist.set(m, nd); prev.set(m, best); }
    }
  }
  const path = [to];
  while (path[0] !== from) path.unshift(prev.get(path[0])!);
  return path;
}

/** Driving seconds of each hop of `path` (1 s where the facility has no such edge). */
export function hopSeconds(edges: FEdge[], path: string[]): number[] {
  const s = new Map<string, number>();
  for (const e of edges) { s.set(e.from + '\u0000' + e.to, e.seconds); s.set(e.to + '\u0000' + e.from, e.seconds); }
  const out: number[] = [];
  for (let i = 1; i < path.length; i++) out.push(s.get(path[i - 1] + '\u0000' + path[i]) ?? 1);
  return out;
}

/**
 * Where a cart driving `path` (from where it is to where it goes) is, when it arrives at
 * `etaMs` and it is `nowMs` now: the point whose remaining driving time equals the time left.
 */
export function interpolate(pos: Map<string, Pt>, edges: FEdge[], path: string[], etaMs: number, nowMs: number): Pt | null {
  const pts = path.map((id) => pos.get(id));
  if (pts.some((p) => !p) || pts.length === 0) return null;
  if (pts.length === 1) return { ...pts[0]! };
  const hops = hopSeconds(edges, path);
  const total = hops.reduce((a, b) => a + b, 0);
  let left = Math.max(0, Math.min(total, (etaMs - nowMs) / 1000));
  // Walk backwards from the destination by `left` seconds.
  for (let i = hops.length - 1; i >= 0; i--) {
    if (left <= hops[i]) {
      const f = hops[i] === 0 ? 1 : 1 - left / hops[i];
      const a = pts[i]!, b = pts[i + 1]!;
      return { x: a.x + (b.x - a.x) * f, y: a.y + (b.y - a.y) * f };
    }
    left -= hops[i];
  }
  return { ...pts[0]! };
}

/** Layers of a DAG by longest path from its sources (cycles, which a DAG has none of, are cut). */
export function dagLayers(nodes: string[], edges: Array<[string, string]>): Map<string, number> {
  const layer = new Map<string, number>(nodes.map((n) => [n, 0]));
  for (let round = 0; round < nodes.length; round++) {
    let changed = false;
    for (const [a, b] of edges) {
      if (!layer.has(a) || !layer.has(b)) continue;
      const want = layer.get(a)! + 1;
      if (want > layer.get(b)! && want < nodes.length) { layer.set(b, want); changed = true; }
    }
    if (!changed) break;
  }
  return layer;
}
