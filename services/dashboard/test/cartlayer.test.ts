import { describe, expect, it } from 'vitest';
import { CartLayer, Geometry, drawLayer, place, restOffset, trackOf, type CartLike, type Ctx2D } from '../src/lib/cartlayer';
import { interpolate, shortestPath, type FEdge, type Pt } from '../src/lib/layout';

// bay --2s-- j1 --3s-- j2 --5s-- dock ; j1 --1s-- bay2
const pos = new Map<string, Pt>([
  ['bay', { x: 0, y: 0 }],
  ['j1', { x: 100, y: 0 }],
  ['j2', { x: 100, y: 100 }],
  ['dock', { x: 300, y: 100 }],
  ['bay2', { x: 100, y: -50 }],
]);
const edges: FEdge[] = [
  { from: 'bay', to: 'j1', seconds: 2 },
  { from: 'j1', to: 'j2', seconds: 3 },
  { from: 'j2', to: 'dock', seconds: 5 },
  { from: 'j1', to: 'bay2', seconds: 1 },
];
const g = new Geometry(pos, edges);
const T0 = Date.parse('2026-01-01T00:00:00Z');
const iso = (ms: number) => new Date(ms).toISOString();
const cart = (o: Partial<CartLike>): CartLike => ({ cart_id: 'c1', status: 'FREE', location: 'bay', home: 'bay', request_id: null, route: null, eta: null, ...o });

describe('cart layer: tracks and positions', () => {
  it('places a cart in flight where interpolate does, at every moment of its drive', () => {
    const c = cart({ status: 'FLIGHT', location: 'j1', route: ['bay', 'j1', 'j2', 'dock'], request_id: 'r1', eta: iso(T0 + 8000) });
    const t = trackOf(c, g, undefined)!;
    expect(Array.from(t.left)).toEqual([8, 5, 0]);
    const p = { x: 0, y: 0 };
    for (let ms = -2000; ms <= 10000; ms += 250) {
      place(t, T0 + ms, p);
      const want = interpolate(pos, edges, ['j1', 'j2', 'dock'], T0 + 8000, T0 + ms)!;
      expect(p.x).toBeCloseTo(want.x, 9);
      expect(p.y).toBeCloseTo(want.y, 9);
    }
    place(t, T0 + 3000, p); // 5 s left: at j2
    expect(p).toEqual({ x: 100, y: 100 });
    place(t, T0 + 5500, p); // 2.5 s left: half way from j2 to the dock
    expect(p).toEqual({ x: 200, y: 100 });
  });
  it('drives home by the shortest path once docked for its request (or with no route)', () => {
    const c = cart({ status: 'FLIGHT', location: 'j2', home: 'bay2', route: ['bay', 'j1', 'j2', 'dock'], request_id: 'r1', eta: iso(T0 + 4000) });
    const t = trackOf(c, g, 'r1')!;
    expect(Array.from(t.xs)).toEqual([100, 100, 100]);
    expect(Array.from(t.ys)).toEqual([100, 0, -50]);
    expect(Array.from(t.left)).toEqual([4, 1, 0]);
    const noRoute = trackOf({ ...c, route: null }, g, undefined)!;
    expect(Array.from(noRoute.left)).toEqual([4, 1, 0]);
    // Not on its route any more: the shortest path to its dock.
    const off = trackOf({ ...c, location: 'bay2' }, g, undefined)!;
    expect(Array.from(off.left)).toEqual([9, 8, 5, 0]);
  });
  it('rests at its location when not in flight; null when the location is not on the map', () => {
    const t = trackOf(cart({ status: 'DOCKED', location: 'dock' }), g, undefined)!;
    expect(t.resting).toBe(true);
    const p = { x: 0, y: 0 };
    place(t, T0, p);
    expect(p).toEqual({ x: 300, y: 100 });
    expect(trackOf(cart({ location: 'nowhere' }), g, undefined)).toBeNull();
    // In flight with no eta: drawn at its location, not fanned out.
    expect(trackOf(cart({ status: 'FLIGHT', location: 'j1' }), g, undefined)!.resting).toBe(false);
  });
  it('caches shortest paths, the same as shortestPath', () => {
    for (const [a, b] of [['bay', 'dock'], ['bay2', 'dock'], ['dock', 'bay'], ['j1', 'j1'], ['bay', 'nowhere']])
      expect(g.shortestPath(a, b)).toEqual(shortestPath(edges, a, b));
    expect(g.shortestPath('bay', 'dock')).toBe(g.shortestPath('bay', 'dock'));
    expect(g.hopSeconds('dock', 'j2')).toBe(5);
    expect(g.hopSeconds('bay', 'dock')).toBe(1);
  });
});

describe('CartLayer', () => {
  const statuses = ['FREE', 'FLIGHT', 'DOCKED'];
  it('fans out carts resting at one node, places moving ones, says when something moves', () => {
    const l = new CartLayer(statuses);
    for (let i = 0; i < 8; i++) l.set(`r${i}`, 'FREE', trackOf(cart({ cart_id: `r${i}` }), g, undefined));
    l.set('f', 'FLIGHT', trackOf(cart({ cart_id: 'f', status: 'FLIGHT', location: 'j2', route: ['j2', 'dock'], request_id: 'x', eta: iso(T0 + 5000) }), g, undefined));
    expect(l.placeAll(T0)).toBe(true);
    expect(l.at('r0')).toEqual({ x: restOffset(0).x, y: restOffset(0).y });
    expect(l.at('r7')).toEqual({ x: 12 + 7, y: -17 });
    expect(l.at('f')).toEqual({ x: 100, y: 100 });
    expect(l.placeAll(T0 + 5000)).toBe(false);
    expect(l.at('f')).toEqual({ x: 300, y: 100 });
    // A resting cart leaving the node moves the others up.
    l.remove('r0');
    l.placeAll(T0);
    expect(l.size).toBe(8);
    expect(new Set(l.ids)).toEqual(new Set(['r1', 'r2', 'r3', 'r4', 'r5', 'r6', 'r7', 'f']));
    const offs = l.ids.filter((id) => id !== 'f').map((id) => l.at(id)!);
    expect(new Set(offs.map((p) => `${p.x},${p.y}`)).size).toBe(7);
    expect(offs.some((p) => p.x === 12 && p.y === -10)).toBe(true);
  });
  it('hit-tests the nearest cart within the radius', () => {
    const l = new CartLayer(statuses);
    l.set('a', 'DOCKED', trackOf(cart({ cart_id: 'a', status: 'FLIGHT', location: 'j1' }), g, undefined));
    l.set('b', 'DOCKED', trackOf(cart({ cart_id: 'b', status: 'FLIGHT', location: 'j2' }), g, undefined));
    l.placeAll(T0);
    expect(l.hit(103, 2, 7)).toBe('a');
    expect(l.hit(100, 96, 7)).toBe('b');
    expect(l.hit(100, 50, 7)).toBeNull();
    expect(l.hit(0, 0, 7)).toBeNull();
    l.set('b', 'DOCKED', null);
    expect(l.has('b')).toBe(false);
    for (let i = 0; i < 200; i++) l.set(`n${i}`, 'FREE', trackOf(cart({ cart_id: `n${i}`, status: 'FLIGHT', location: 'dock' }), g, undefined));
    l.placeAll(T0);
    expect(l.size).toBe(201);
    expect(l.hit(101, 1, 7)).toBe('a');
  });
  it('draws a square per cart grouped by status colour at the device pixel ratio, rings for hover and selection', () => {
    const calls: string[] = [];
    const ctx: Ctx2D = {
      fillStyle: '', strokeStyle: '', lineWidth: 1,
      setTransform: (a) => calls.push(`scale ${a}`),
      clearRect: (_x, _y, w, h) => calls.push(`clear ${w}x${h}`),
      beginPath: () => calls.push('begin'),
      fillRect: (x, y, w, h) => calls.push(`rect ${ctx.fillStyle} ${x},${y} ${w}x${h}`),
      moveTo: () => {}, arc: () => calls.push('arc'),
      stroke: () => calls.push(`stroke ${ctx.strokeStyle}`),
    };
    const l = new CartLayer(statuses);
    for (let i = 0; i < 5; i++) l.set(`a${i}`, 'FREE', trackOf(cart({ cart_id: `a${i}` }), g, undefined));
    for (let i = 0; i < 3; i++) l.set(`b${i}`, 'DOCKED', trackOf(cart({ cart_id: `b${i}`, status: 'DOCKED', location: 'dock' }), g, undefined));
    l.set('z', 'WEIRD', trackOf(cart({ cart_id: 'z', status: 'WEIRD', location: 'j1' }), g, undefined));
    l.placeAll(T0);
    drawLayer(ctx, l, ['#f00', '#0f0', '#00f'], 900, 520, 2, 'a1', 'b0');
    expect(calls.slice(0, 2)).toEqual(['scale 2', 'clear 900x520']);
    const rects = calls.filter((c) => c.startsWith('rect'));
    expect(rects.length).toBe(9);
    // Grouped by colour, in the order of the statuses, any other status last.
    expect(rects.map((c) => c.split(' ')[1])).toEqual([...Array(5).fill('#f00'), ...Array(3).fill('#00f'), '#ffffff']);
    // On whole pixels, 7 px squares centred on the cart (z rests at j1, fanned out by restOffset(0)).
    expect(rects[8]).toBe(`rect #ffffff ${100 + 12 - 3},${-10 - 3} 7x7`);
    expect(calls.filter((c) => c === 'arc').length).toBe(2);
    expect(calls.filter((c) => c.startsWith('stroke')).length).toBe(2);
  });
});

describe('Geometry shapes', () => {
  it('shares the points of one path between the tracks of every cart driving it', () => {
    const gg = new Geometry(pos, edges);
    const a = trackOf(cart({ cart_id: 'a', status: 'FLIGHT', location: 'j1', route: ['bay', 'j1', 'j2', 'dock'], request_id: 'r', eta: iso(T0 + 1000) }), gg, undefined)!;
    const b = trackOf(cart({ cart_id: 'b', status: 'FLIGHT', location: 'j1', route: ['bay', 'j1', 'j2', 'dock'], request_id: 's', eta: iso(T0 + 5000) }), gg, undefined)!;
    expect(a.xs).toBe(b.xs);
    expect(a.etaMs).not.toBe(b.etaMs);
    // Another route through the same place is another shape.
    const c = trackOf(cart({ cart_id: 'c', status: 'FLIGHT', location: 'j1', route: ['bay2', 'j1', 'bay'], request_id: 't', eta: iso(T0 + 5000) }), gg, undefined)!;
    expect(Array.from(c.xs)).toEqual([100, 0]);
    // Resting carts at one node share its point.
    const r1 = trackOf(cart({ cart_id: 'r1' }), gg, undefined)!, r2 = trackOf(cart({ cart_id: 'r2' }), gg, undefined)!;
    expect(r1.xs).toBe(r2.xs);
    expect(r1.resting && r2.resting).toBe(true);
  });
});
