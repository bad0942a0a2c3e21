// The page's one NATS connection over nats-server's WebSocket listener, with its state always
// visible: connecting, connected, reconnecting (attempt n, next try in ms, with back-off),
// failed. Every (re)connect bumps `epoch`; views fetch their state again when it changes.
// Anonymous by default (the read-only `dashboard` user under the set-up's accounts); `signIn`
// reconnects with a user and password kept only in memory, `signOut` returns to anonymous.

import { wsconnect, headers, type NatsConnection, type Msg, type Subscription } from '@nats-io/nats-core';
import { backoffMs } from './backoff';
import { isAuthError, permissionViolation, refusalText } from './auth';

export type ConnState = 'loading' | 'connecting' | 'connected' | 'reconnecting' | 'failed';

export class ApiError extends Error {
  constructor(
    public code: string,
    message: string,
  ) {
    super(message);
  }
}

const enc = new TextEncoder();
const dec = new TextDecoder();

class Connection {
  state = $state<ConnState>('loading');
  epoch = $state(0);
  attempt = $state(0);
  nextDelay = $state(0);
  reconnects = $state(0);
  url = $state('');
  error = $state('');
  server = $state('');
  nc: NatsConnection | null = null;
  private subs: Array<{ subject: string; cb: (m: Msg) => void; sub?: Subscription }> = [];

  /** The NATS user the page connected with (`null`: anonymous). */
  user = $state<string | null>(null);
  /** The server's INFO `auth_required` (false: no accounts, anonymous may do anything). */
  authRequired = $state(true);
  signInError = $state('');
  signingIn = $state(false);
  /** Kept in memory only, never stored; dropped on sign-out. */
  private creds: { user: string; pass: string } | null = null;
  /** Bumped by every new connection attempt loop: an older loop or connection gives way. */
  private generation = 0;

  async start(): Promise<void> {
    try {
      const cfg = await (await fetch('/config.json', { cache: 'no-store' })).json();
      const params = new URLSearchParams(location.search);
      this.url = params.get('nats') || cfg.nats_ws_url || '';
    } catch (e) {
      this.url = new URLSearchParams(location.search).get('nats') || '';
    }
    if (!this.url) {
      this.state = 'failed';
      this.error = 'the gateway gave no NATS WebSocket URL: set NATS_WS_URL for switchyard run';
      return;
    }
    await this.open(false);
  }

  /** Connects with the current credentials, retrying with back-off; with `failOnAuth`, a refused
   * sign-in throws instead of retrying. */
  private async open(failOnAuth: boolean): Promise<void> {
    const gen = ++this.generation;
    this.state = 'connecting';
    this.attempt = 0;
    for (;;) {
      if (gen !== this.generation) return;
      const creds = this.creds;
      try {
        this.attempt += 1;
        const nc = await wsconnect({
          servers: this.url,
          name: 'switchyard-dashboard',
          maxReconnectAttempts: -1,
          reconnectDelayHandler: () => {
            this.attempt += 1;
            this.nextDelay = backoffMs(this.attempt);
            return this.nextDelay;
          },
          pingInterval: 5000,
          maxPingOut: 2,
          ...(creds ? { user: creds.user, pass: creds.pass } : {}),
        });
        if (gen !== this.generation) {
          nc.close().catch(() => {});
          return;
        }
        this.nc = nc;
        this.user = creds?.user ?? null;
        this.server = nc.info?.server_name ?? '';
        this.authRequired = nc.info?.auth_required === true;
        this.connected();
        for (const s of this.subs) this.attach(s);
        this.watch(nc);
        return;
      } catch (e) {
        if (failOnAuth && creds && isAuthError(e)) throw e;
        this.error = String(e);
        this.nextDelay = backoffMs(this.attempt);
        this.state = 'reconnecting';
        await new Promise((r) => setTimeout(r, this.nextDelay));
      }
    }
  }

  private async drop(): Promise<void> {
    const old = this.nc;
    this.nc = null;
    for (const s of this.subs) s.sub = undefined;
    if (old) await old.close().catch(() => {});
  }

  /** Reconnects as `user` (the password stays in memory only); a refused sign-in says so and
   * reconnects anonymously. */
  async signIn(user: string, pass: string): Promise<boolean> {
    this.signInError = '';
    this.signingIn = true;
    try {
      await this.drop();
      this.creds = { user, pass };
      try {
        await this.open(true);
        return true;
      } catch (e) {
        this.creds = null;
        this.signInError = `sign-in as ${user} refused: ${e instanceof Error ? e.message : String(e)}`;
        await this.open(false);
        return false;
      }
    } finally {
      this.signingIn = false;
    }
  }

  /** Back to anonymous (read-only under the set-up's accounts). */
  async signOut(): Promise<void> {
    this.signInError = '';
    this.creds = null;
    await this.drop();
    await this.open(false);
  }

  private connected(): void {
    this.state = 'connected';
    this.attempt = 0;
    this.nextDelay = 0;
    this.error = '';
    this.epoch += 1;
  }

  private async watch(nc: NatsConnection): Promise<void> {
    for await (const s of nc.status()) {
      if (this.nc !== nc) return;
      if (s.type === 'disconnect' || s.type === 'reconnecting' || s.type === 'staleConnection') {
        this.state = 'reconnecting';
      } else if (s.type === 'reconnect') {
        this.reconnects += 1;
        this.connected();
      }
    }
    if (this.nc === nc) this.state = 'failed';
  }

  private attach(s: { subject: string; cb: (m: Msg) => void; sub?: Subscription }): void {
    if (!this.nc) return;
    s.sub = this.nc.subscribe(s.subject, { callback: (err, m) => !err && s.cb(m) });
  }

  /** Subscribes for the page's life (the client subscribes again after a reconnect); returns an unsubscribe. */
  subscribe(subject: string, cb: (m: Msg) => void): () => void {
    const s: { subject: string; cb: (m: Msg) => void; sub?: Subscription } = { subject, cb };
    this.subs.push(s);
    this.attach(s);
    return () => {
      s.sub?.unsubscribe();
      this.subs = this.subs.filter((x) => x !== s);
    };
  }

  /** A JSON request; an error reply (`{"error": {code, message}}`) throws [`ApiError`]. */
  async request<T = any>(subject: string, body: unknown = {}, opts: { timeout?: number; headers?: Record<string, string> } = {}): Promise<T> {
    if (!this.nc || this.state !== 'connected') throw new ApiError('unavailable', 'not connected to NATS');
    const h = opts.headers ? headers() : undefined;
    if (h && opts.headers) for (const [k, v] of Object.entries(opts.headers)) h.set(k, v);
    let m: Msg;
    try {
      m = await this.nc.request(subject, enc.encode(JSON.stringify(body)), { timeout: opts.timeout ?? 5000, headers: h });
    } catch (e) {
      const refused = permissionViolation(e);
      if (refused) throw new ApiError('permission_denied', refusalText({ ...refused, subject: refused.subject || subject }, this.user));
      throw new ApiError('unavailable', `${subject}: ${e instanceof Error ? e.message : String(e)}`);
    }
    const text = dec.decode(m.data);
    const v = text ? JSON.parse(text) : null;
    if (v && typeof v === 'object' && v.error && typeof v.error === 'object') {
      throw new ApiError(String(v.error.code), String(v.error.message ?? ''));
    }
    return v as T;
  }

  publish(subject: string, body: unknown): void {
    this.nc?.publish(subject, enc.encode(JSON.stringify(body)));
  }
}

export const conn = new Connection();

export function json<T = any>(m: Msg): T | null {
  try {
    return JSON.parse(dec.decode(m.data)) as T;
  } catch {
    return null;
  }
}

export function text(m: Msg): string {
  return dec.decode(m.data);
}
