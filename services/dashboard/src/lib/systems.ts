// The systems to pick from in the Engine view (`engine.query.systems`, an addition).

export interface SystemSummary { system_id: string; modules: number; seq: number }

/** The systems whose id contains `filter` (case-insensitive), at most `max`, by id. */
export function filterSystems(list: SystemSummary[], filter: string, max: number): SystemSummary[] {
  const f = filter.trim().toLowerCase();
  return list
    .filter((s) => !f || s.system_id.toLowerCase().includes(f))
    .sort((a, b) => (a.system_id < b.system_id ? -1 : a.system_id > b.system_id ? 1 : 0))
    .slice(0, max);
}
