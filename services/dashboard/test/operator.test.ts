import { describe, expect, it } from 'vitest';
import { identity, isAuthError, permissionViolation, refusalText } from '../src/lib/auth';
import { QueueBook, throttle } from '../src/lib/queue';
import { filterSystems } from '../src/lib/systems';

describe('sign-in and refusals', () => {
  it('names who the page is connected as', () => {
    expect(identity(null).label).toBe('anonymous (read-only)');
    expect(identity('operator').label).toBe('operator');
    expect(identity(null, false).label).toBe('anonymous (no NATS accounts)');
  });
  it('finds the permissions violation in a request error and its causes', () => {
    // nats-core wraps the server's -ERR in a RequestError whose cause is the violation.
    const pv = Object.assign(new Error('Permissions Violation for Publish to "engine.exec"'), { name: 'PermissionViolationError', operation: 'publish', subject: 'engine.exec' });
    const wrapped = Object.assign(new Error('Permissions Violation for Publish to "engine.exec"'), { name: 'RequestError', cause: pv });
    expect(permissionViolation(wrapped)).toEqual({ subject: 'engine.exec', operation: 'publish', message: 'Permissions Violation for Publish to "engine.exec"' });
    // Only the text: the subject is read from it.
    expect(permissionViolation(new Error("'Permissions Violation for Publish to \"dispatch.cmd.request-datasets\"'"))?.subject).toBe('dispatch.cmd.request-datasets');
    expect(permissionViolation(new Error('TIMEOUT'))).toBeNull();
    expect(permissionViolation(undefined)).toBeNull();
  });
  it('tells the user what to do', () => {
    const v = { subject: 'engine.exec', message: 'Permissions Violation for Publish to "engine.exec"' };
    const anon = refusalText(v, null);
    expect(anon).toContain('the bus refused engine.exec');
    expect(anon).toContain('read-only dashboard user');
    expect(anon).toContain('sign in as operator');
    expect(refusalText(v, 'operator')).toContain('signed in as operator');
  });
  it('recognises a refused sign-in', () => {
    expect(isAuthError(Object.assign(new Error("'Authorization Violation'"), { name: 'AuthorizationError' }))).toBe(true);
    expect(isAuthError({ message: 'x', cause: new Error('Authorization Violation') })).toBe(true);
    expect(isAuthError(new Error('connection refused'))).toBe(false);
  });
});

describe('QueueBook', () => {
  const q = (cart_id: string, ...ids: string[]) => ({ cart_id, requests: ids.map((request_id) => ({ request_id, server_id: 's', datasets: ['d'] })) });
  it('keeps the newest answer and lists the longest queues first', () => {
    const b = new QueueBook();
    expect(b.replaceAll({ queues: [q('c2', 'r1'), q('c1', 'r2', 'r3'), q('c3')], seq: 10 })).toBe(true);
    expect(b.rows(10).map((r) => r.cart_id)).toEqual(['c1', 'c2']);
    expect(b.length('c1')).toBe(2);
    expect(b.length('c3')).toBe(0);
    expect(b.totals()).toEqual({ carts: 2, requests: 3 });
    // An older answer (another process's view behind) is ignored.
    expect(b.replaceAll({ queues: [], seq: 9 })).toBe(false);
    expect(b.totals().requests).toBe(3);
    expect(b.rows(1).length).toBe(1);
  });
  it('drops a request once its cart carries it', () => {
    const b = new QueueBook();
    b.replaceAll({ queues: [q('c1', 'r2', 'r3')], seq: 1 });
    expect(b.left('c1', null)).toBe(false);
    expect(b.left('c1', 'other')).toBe(false);
    expect(b.left('c1', 'r2')).toBe(true);
    expect(b.rows(5)[0].requests.map((r) => r.request_id)).toEqual(['r3']);
    expect(b.left('c1', 'r3')).toBe(true);
    expect(b.rows(5)).toEqual([]);
  });
  it('throttle runs at most once per period, the last call included', () => {
    const timers: Array<() => void> = [];
    let runs = 0;
    const t = throttle(() => (runs += 1), 500, (cb) => timers.push(cb));
    t(); t(); t();
    expect(timers.length).toBe(1);
    timers.shift()!();
    expect(runs).toBe(1);
    t();
    expect(timers.length).toBe(1);
  });
});

describe('filterSystems', () => {
  const list = [
    { system_id: 'lobby', modules: 2, seq: 1 },
    { system_id: 'Hall-B', modules: 1, seq: 2 },
    { system_id: 'hall-a', modules: 3, seq: 3 },
  ];
  it('filters by id, case-insensitive, sorted, capped', () => {
    expect(filterSystems(list, 'HALL', 10).map((s) => s.system_id)).toEqual(['Hall-B', 'hall-a']);
    expect(filterSystems(list, '', 2).length).toBe(2);
    expect(filterSystems(list, 'nope', 10)).toEqual([]);
  });
});
