// The requests waiting in each cart's FIFO queue (`dispatch.query.queue`, an addition): the page
// fetches them on (re)connect, after its own requests and when carts change (at most twice a
// second), and keeps the newest answer by stream sequence.

export interface QueuedRequest { request_id: string; server_id: string; datasets: string[] }
export interface CartQueue { cart_id: string; requests: QueuedRequest[] }
export interface Queues { queues: CartQueue[]; seq: number }

export class QueueBook {
  private byCart = new Map<string, QueuedRequest[]>();
  /** Stream sequence of the answer held (an older answer is ignored). */
  seq = 0;

  /** Takes an answer for every cart; false when it is older than the one held. */
  replaceAll(reply: Queues): boolean {
    if (reply.seq < this.seq) return false;
    this.seq = reply.seq;
    this.byCart = new Map(reply.queues.filter((q) => q.requests.length).map((q) => [q.cart_id, q.requests]));
    return true;
  }

  /** A cart now carries `request_id` (its status update): that request has left its queue. */
  left(cartId: string, requestId: string | null): boolean {
    const q = this.byCart.get(cartId);
    if (!q || !requestId || !q.some((r) => r.request_id === requestId)) return false;
    const rest = q.filter((r) => r.request_id !== requestId);
    if (rest.length) this.byCart.set(cartId, rest);
    else this.byCart.delete(cartId);
    return true;
  }

  length(cartId: string): number {
    return this.byCart.get(cartId)?.length ?? 0;
  }

  /** Carts with waiting requests, the longest queue first (then by id), at most `max`. */
  rows(max: number): CartQueue[] {
    return [...this.byCart]
      .map(([cart_id, requests]) => ({ cart_id, requests }))
      .sort((a, b) => b.requests.length - a.requests.length || a.cart_id.localeCompare(b.cart_id))
      .slice(0, max);
  }

  /** Carts with a queue, and requests waiting in all. */
  totals(): { carts: number; requests: number } {
    let requests = 0;
    for (const q of this.byCart.values()) requests += q.length;
    return { carts: this.byCart.size, requests };
  }
}

/** Throttles `fn` to at most once per `ms` (trailing call kept). */
export function throttle(fn: () => void, ms: number, timer: (cb: () => void, ms: number) => unknown = setTimeout): () => void {
  let pending = false;
  let last = -Infinity;
  return () => {
    if (pending) return;
    const wait = Math.max(0, last + ms - Date.now());
    pending = true;
    timer(() => {
      pending = false;
      last = Date.now();
      fn();
    }, wait);
  };
}
