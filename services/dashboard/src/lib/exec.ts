// The exec form from a driver's metadata: `functions: {fn: {param: [type, default?]}}`, types
// `String`, `Int32`, `Int64`, `Float64`, `Bool`, `JSON` and unions such as `String|Int32`.

export type Param = { name: string; type: string; hasDefault: boolean; default?: unknown };

export function params(metadata: any, fn: string): Param[] {
  const f = metadata?.functions?.[fn] ?? {};
  return Object.entries(f).map(([name, spec]) => {
    const arr = Array.isArray(spec) ? spec : [spec];
    return { name, type: String(arr[0] ?? 'JSON'), hasDefault: arr.length > 1, default: arr[1] };
  });
}

/** The input kind for a type. */
export function inputKind(type: string): 'checkbox' | 'number' | 'text' | 'json' {
  if (type === 'Bool') return 'checkbox';
  if (type === 'Int32' || type === 'Int64' || type === 'Float64') return 'number';
  if (type === 'String') return 'text';
  return 'json';
}

/** The typed value of a field as entered (`undefined`: left empty, so the default applies). */
export function coerce(type: string, raw: unknown): unknown {
  if (raw === '' || raw === undefined || raw === null) return undefined;
  switch (inputKind(type)) {
    case 'checkbox': return Boolean(raw);
    case 'number': return Number(raw);
    case 'text': return String(raw);
    default:
      try { return JSON.parse(String(raw)); } catch { return String(raw); }
  }
}

/** Role needed for `fn` by the metadata's `security`. */
export function roleFor(metadata: any, fn: string): string | null {
  if (metadata?.security?.administrator?.includes(fn)) return 'administrator';
  if (metadata?.security?.support?.includes(fn)) return 'support';
  return null;
}
