import { describe, expect, it } from 'vitest';
import { applyDelta, splitPath, TreeTracker, type Delta, type Tree } from '../src/lib/tree';

function tree(version: number): Tree {
  return {
    state: 1, state_name: 'WORKERS_CONNECTED', ip: '10.0.0.1', port: 9000, version,
    workers: [{ id: 'w1', name: 'one', ip: '10.0.0.2', port: 9001, nodes: [] }],
    graph: { nodes: [], edges: [] }, worker_graph_map: {},
  } as Tree;
}

describe('applyDelta (contract section 6)', () => {
  it('upserts a list element by its id and a field below it', () => {
    const t = tree(3) as any;
    applyDelta(t, { version: 4, op: 'upsert', path: 'workers/w1/nodes/n3', value: { id: 'n3', name: 'cam', running: false } });
    expect(t.workers[0].nodes).toEqual([{ id: 'n3', name: 'cam', running: false }]);
    applyDelta(t, { version: 5, op: 'upsert', path: 'workers/w1/nodes/n3/running', value: true });
    expect(t.workers[0].nodes[0].running).toBe(true);
    expect(t.version).toBe(5);
  });
  it('removes by id', () => {
    const t = tree(1) as any;
    applyDelta(t, { version: 2, op: 'remove', path: 'workers/w1' });
    expect(t.workers).toEqual([]);
  });
  it('replaces the whole tree on the root path and sets its version', () => {
    const t = applyDelta(tree(1) as any, { version: 2, op: 'upsert', path: '', value: { ...tree(0), state: 2, state_name: 'NODES_READY' } as any });
    expect(t.state).toBe(2);
    expect(t.version).toBe(2);
  });
  it('unescapes ~1 and ~0 in keys', () => {
    expect(splitPath('worker_graph_map/a~1b~0c')).toEqual(['worker_graph_map', 'a/b~c']);
    const t = tree(1) as any;
    applyDelta(t, { version: 2, op: 'upsert', path: 'worker_graph_map/a~1b', value: 'w1' });
    expect(t.worker_graph_map['a/b']).toBe('w1');
  });
  it('throws on a path that leads nowhere', () => {
    expect(() => applyDelta(tree(1) as any, { version: 2, op: 'upsert', path: 'workers/nope/nodes/x', value: 1 })).toThrow();
  });
});

describe('TreeTracker gap rule', () => {
  const d = (version: number, path = 'state', value: any = version): Delta => ({ version, op: 'upsert', path, value });

  it('applies the next version, drops repeats', () => {
    const t = new TreeTracker();
    t.fetched(tree(5));
    expect(t.offer(d(6))).toBe('applied');
    expect(t.offer(d(6))).toBe('stale');
    expect(t.offer(d(3))).toBe('stale');
    expect(t.version).toBe(6);
    expect(t.gaps).toBe(0);
  });
  it('a skipped version is a gap, counted; the refetched tree takes the buffered deltas after it', () => {
    const t = new TreeTracker();
    t.fetched(tree(5));
    expect(t.offer(d(8))).toBe('gap');
    expect(t.gaps).toBe(1);
    t.beginFetch();
    expect(t.offer(d(9))).toBe('pending');
    // The fetched tree is at version 8: delta 8 is old, 9 applies on top.
    expect(t.fetched(tree(8))).toBe('applied');
    expect(t.version).toBe(9);
    expect((t.tree as any).state).toBe(9);
  });
  it('a fetched tree still behind the buffer is reported, and the buffer does not outlive it', () => {
    const t = new TreeTracker();
    t.fetched(tree(1));
    t.offer(d(5));
    t.beginFetch();
    expect(t.fetched(tree(2))).toBe('gap');
    expect(t.gaps).toBe(1);
    // A bogus delta is gone after the fetch: the next real one applies.
    t.beginFetch();
    expect(t.fetched(tree(2))).toBe('applied');
    expect(t.offer(d(3))).toBe('applied');
  });
  it('deltas before the first fetch wait for it', () => {
    const t = new TreeTracker();
    expect(t.offer(d(2))).toBe('pending');
    t.fetched(tree(1));
    expect(t.version).toBe(2);
  });
  it('a delta whose path does not apply counts as a gap', () => {
    const t = new TreeTracker();
    t.fetched(tree(1));
    expect(t.offer(d(2, 'workers/zz/nodes/a', 1))).toBe('gap');
    expect(t.gaps).toBe(1);
  });
});
