/** Reconnect back-off: 250 ms doubling to 8 s, with up to 20 % jitter. `attempt` counts from 1. */
export function backoffMs(attempt: number, random: () => number = Math.random): number {
  const base = Math.min(8000, 250 * 2 ** Math.max(0, attempt - 1));
  return Math.round(base * (1 + 0.2 * random()));
}

/** Encodes an id as one subject token (contract: ASCII letters, digits, `-`, `_` stay; other bytes %XX). */
export function encodeToken(id: string): string {
  let out = '';
  for (const b of new TextEncoder().encode(id)) {
    const c = String.fromCharCode(b);
    if (/[A-Za-z0-9_-]/.test(c)) out += c;
    else out += '%' + b.toString(16).toUpperCase().padStart(2, '0');
  }
  return out;
}

export function decodeToken(t: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < t.length; i++) {
    if (t[i] === '%' && i + 2 < t.length + 1) {
      bytes.push(parseInt(t.slice(i + 1, i + 3), 16));
      i += 2;
    } else bytes.push(t.charCodeAt(i));
  }
  return new TextDecoder().decode(new Uint8Array(bytes));
}
