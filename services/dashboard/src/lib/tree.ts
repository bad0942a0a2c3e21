// The cluster network tree and its deltas (contract section 6): a delta `{version, op, path, value}`
// applies to the tree of `version - 1`; `path` is `/`-separated keys from the root, list elements
// named by their `id`, keys holding `/` or `~` escaped as `~1` / `~0`; path "" is the whole tree.

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

export interface Delta {
  version: number;
  op: 'upsert' | 'remove';
  path: string;
  value?: Json;
}

export interface Tree {
  state: number;
  state_name: string;
  ip: string;
  port: number;
  workers: Array<{ id: string; name: string; ip: string; port: number; connected?: boolean; nodes: Node[] }>;
  graph: { nodes: Node[]; edges: Array<[string, string]> };
  worker_graph_map: Record<string, string>;
  version: number;
  [k: string]: Json | unknown;
}

export interface Node {
  id: string;
  name: string;
  port: number;
  running: boolean;
  data_type: string;
  dashboard_component: string | null;
  capabilities: string[];
  [k: string]: unknown;
}

export function unescapeKey(k: string): string {
  return k.replace(/~1/g, '/').replace(/~0/g, '~');
}

export function splitPath(path: string): string[] {
  return path === '' ? [] : path.split('/').map(unescapeKey);
}

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The child of `container` named `key`: an object field, or the list element whose `id` is `key`. */
function child(container: unknown, key: string): unknown {
  if (Array.isArray(container)) {
    const byId = container.find((e) => isObj(e) && e.id === key);
    if (byId !== undefined) return byId;
    if (/^\d+$/.test(key)) return container[Number(key)];
    return undefined;
  }
  if (isObj(container)) return container[key];
  return undefined;
}

function setChild(container: unknown, key: string, value: unknown): boolean {
  if (Array.isArray(container)) {
    const i = container.findIndex((e) => isObj(e) && e.id === key);
    if (i >= 0) container[i] = value;
    else if (/^\d+$/.test(key) && Number(key) < container.length) container[Number(key)] = value;
    else if (/^\d+$/.test(key) && Number(key) === container.length) container.push(value);
    else container.push(value);
    return true;
  }
  if (isObj(container)) {
    container[key] = value;
    return true;
  }
  return false;
}

function removeChild(container: unknown, key: string): boolean {
  if (Array.isArray(container)) {
    let i = container.findIndex((e) => isObj(e) && e.id === key);
    if (i < 0 && /^\d+$/.test(key)) i = Number(key);
    if (i >= 0 && i < container.length) container.splice(i, 1);
    return true;
  }
  if (isObj(container)) {
    delete container[key];
    return true;
  }
  return false;
}

/**
 * Applies one delta to `tree` in place (the caller checked its version) and sets the tree's
 * `version`. Returns the tree (a new object when the path is the root). Throws when the path does
 * not lead anywhere: the caller then fetches the tree again.
 */
export function applyDelta<T extends Record<string, unknown>>(tree: T, d: Delta): T {
  const keys = splitPath(d.path);
  if (keys.length === 0) {
    if (d.op === 'remove') throw new Error('cannot remove the root');
    const next = structuredClone(d.value) as T;
    (next as Record<string, unknown>).version = d.version;
    return next;
  }
  let cur: unknown = tree;
  for (const k of keys.slice(0, -1)) {
    const next = child(cur, k);
    if (next === undefined) throw new Error(`delta path ${d.path}: no ${k}`);
    cur = next;
  }
  const last = keys[keys.length - 1];
  const ok = d.op === 'upsert' ? setChild(cur, last, structuredClone(d.value)) : removeChild(cur, last);
  if (!ok) throw new Error(`delta path ${d.path}: not a container`);
  (tree as Record<string, unknown>).version = d.version;
  return tree;
}

export type Offer = 'applied' | 'stale' | 'gap' | 'pending';

/**
 * One manager's tree following `cluster.tree.<manager>`: the contract's gap rule. A delta with the
 * next version applies; an older or equal one is a repeat and is dropped; any other version is a
 * gap: the tree must be fetched again (`needsFetch`), and deltas arriving meanwhile are kept and
 * applied on top of the fetched tree.
 */
export class TreeTracker {
  tree: Tree | null = null;
  gaps = 0;
  applied = 0;
  fetching = false;
  private buffer: Delta[] = [];
  static readonly MAX_BUFFER = 1000;

  get version(): number {
    return this.tree ? Number(this.tree.version) : 0;
  }

  /** Offers a delta. `gap` means: call `beginFetch`, fetch the tree, then `fetched`. */
  offer(d: Delta): Offer {
    if (this.fetching || !this.tree) {
      this.buffer.push(d);
      if (this.buffer.length > TreeTracker.MAX_BUFFER) this.buffer.shift();
      return 'pending';
    }
    if (d.version <= this.version) return 'stale';
    if (d.version !== this.version + 1) {
      this.gaps += 1;
      this.buffer.push(d);
      return 'gap';
    }
    try {
      this.tree = applyDelta(this.tree as unknown as Record<string, unknown>, d) as unknown as Tree;
      this.applied += 1;
      return 'applied';
    } catch {
      this.gaps += 1;
      return 'gap';
    }
  }

  beginFetch(): void {
    this.fetching = true;
  }

  /**
   * The tree as `cluster.query.tree` returned it; the buffered deltas that follow its version apply
   * on top. `gap` when a buffered delta is still ahead of it (the read model may be behind the live
   * subject): the caller fetches again, a bounded number of times. Either way the buffer is
   * emptied, so a delta that never fits (a bogus one) is not kept for ever.
   */
  fetched(tree: Tree): Offer {
    this.fetching = false;
    this.tree = tree;
    const pending = this.buffer.filter((d) => d.version > this.version).sort((a, b) => a.version - b.version);
    this.buffer = [];
    for (const d of pending) {
      if (d.version === this.version) continue;
      if (d.version !== this.version + 1) return 'gap';
      if (this.offer(d) !== 'applied') return 'gap';
    }
    return 'applied';
  }

  /** Fetching failed: the next delta or fetch starts again. */
  failed(): void {
    this.fetching = false;
  }
}
