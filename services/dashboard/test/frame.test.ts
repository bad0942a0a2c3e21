import { describe, expect, it } from 'vitest';
import { Coalescer, FrameQueue, capFront } from '../src/lib/frame';
import { backoffMs, encodeToken, decodeToken } from '../src/lib/backoff';
import { interpolate, shortestPath, dagLayers } from '../src/lib/layout';

function manualFrames() {
  const cbs: Array<(t: number) => void> = [];
  return { schedule: (cb: (t: number) => void) => cbs.push(cb), frame: () => cbs.splice(0).forEach((cb) => cb(0)), pending: () => cbs.length };
}

describe('Coalescer', () => {
  it('hands on the newest value per key once per frame', () => {
    const f = manualFrames();
    const batches: Array<Map<string, number>> = [];
    const c = new Coalescer<string, number>((b) => batches.push(b), f.schedule);
    for (let i = 0; i < 5000; i++) c.push('cart-' + (i % 1000), i);
    expect(f.pending()).toBe(1);
    expect(batches.length).toBe(0);
    f.frame();
    expect(batches.length).toBe(1);
    expect(batches[0].size).toBe(1000);
    expect(batches[0].get('cart-7')).toBe(4007);
    expect(c.received).toBe(5000);
    expect(c.flushed).toBe(1000);
    c.push('cart-1', 1);
    f.frame();
    expect(batches.length).toBe(2);
  });
  it('FrameQueue keeps every update in order', () => {
    const f = manualFrames();
    const got: number[][] = [];
    const q = new FrameQueue<number>((b) => got.push(b), f.schedule);
    [1, 2, 3].forEach((v) => q.push(v));
    f.frame();
    expect(got).toEqual([[1, 2, 3]]);
  });
  it('capFront caps lists', () => {
    let l: number[] = [];
    for (let i = 0; i < 10; i++) l = capFront(l, i, 3);
    expect(l).toEqual([9, 8, 7]);
  });
});

describe('helpers', () => {
  it('back-off doubles up to 8 s', () => {
    expect(backoffMs(1, () => 0)).toBe(250);
    expect(backoffMs(3, () => 0)).toBe(1000);
    expect(backoffMs(20, () => 0)).toBe(8000);
    expect(backoffMs(1, () => 1)).toBe(300);
  });
  it('subject tokens as the contract encodes them', () => {
    expect(encodeToken('jane.doe@example.com')).toBe('jane%2Edoe%40example%2Ecom');
    expect(decodeToken('jane%2Edoe%40example%2Ecom')).toBe('jane.doe@example.com');
    expect(decodeToken(encodeToken('ü *>/'))).toBe('ü *>/');
  });
  it('interpolates a cart along its route by the time left', () => {
    const pos = new Map([['a', { x: 0, y: 0 }], ['b', { x: 100, y: 0 }], ['c', { x: 100, y: 100 }]]);
    const edges = [{ from: 'a', to: 'b', seconds: 10 }, { from: 'b', to: 'c', seconds: 10 }];
    expect(interpolate(pos, edges, ['a', 'b', 'c'], 15_000, 0)).toEqual({ x: 50, y: 0 });
    expect(interpolate(pos, edges, ['a', 'b', 'c'], 5_000, 0)).toEqual({ x: 100, y: 50 });
    expect(interpolate(pos, edges, ['a', 'b', 'c'], 0, 10)).toEqual({ x: 100, y: 100 });
    expect(interpolate(pos, edges, ['a', 'b', 'c'], 99_000, 0)).toEqual({ x: 0, y: 0 });
    expect(shortestPath(edges, 'c', 'a')).toEqual(['c', 'b', 'a']);
  });
  it('layers a DAG by longest path', () => {
    const l = dagLayers(['a', 'b', 'c', 'd'], [['a', 'b'], ['b', 'c'], ['a', 'c'], ['a', 'd']]);
    expect([l.get('a'), l.get('b'), l.get('c'), l.get('d')]).toEqual([0, 1, 2, 1]);
  });
});
