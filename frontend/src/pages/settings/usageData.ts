import type { UsageReport } from '../../api/client';

function isoDay(date: Date): string {
  return date.toISOString().slice(0, 10);
}

/** `[from, to)` in whole UTC days, ending tomorrow so that today is included. */
export function dayRange(days: number, now: Date = new Date()): { from: string; to: string } {
  const end = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate() + 1));
  const start = new Date(end.getTime() - days * 86_400_000);
  return { from: isoDay(start), to: isoDay(end) };
}

/** One point per day, with zeros where nothing ran. */
export function fillDays(report: UsageReport, from: string, to: string) {
  const byDay = new Map(report.groups.map((row) => [row.key, row]));
  const points: { day: string; prompt: number; completion: number; runs: number }[] = [];
  for (let t = Date.parse(`${from}T00:00:00Z`); t < Date.parse(`${to}T00:00:00Z`); t += 86_400_000) {
    const day = isoDay(new Date(t));
    const row = byDay.get(day);
    points.push({ day: day.slice(5), prompt: row?.prompt_tokens ?? 0, completion: row?.completion_tokens ?? 0, runs: row?.runs ?? 0 });
  }
  return points;
}
