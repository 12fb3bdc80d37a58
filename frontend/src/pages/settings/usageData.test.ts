import { describe, expect, it } from 'vitest';
import { dayRange, fillDays } from './usageData';

describe('usage data', () => {
  it('makes a range of whole UTC days that includes today', () => {
    expect(dayRange(7, new Date('2026-11-25T19:00:00Z'))).toEqual({ from: '2026-11-19', to: '2026-11-26' });
  });

  it('fills days without runs with zeros', () => {
    const points = fillDays(
      {
        from: '2026-11-23T00:00:00Z',
        to: '2026-11-26T00:00:00Z',
        group_by: 'day',
        scope: 'tenant',
        totals: { runs: 1, prompt_tokens: 10, completion_tokens: 5, total_tokens: 15 },
        groups: [{ key: '2026-11-24', runs: 1, prompt_tokens: 10, completion_tokens: 5, total_tokens: 15, estimated: false }],
      },
      '2026-11-23',
      '2026-11-26',
    );
    expect(points).toEqual([
      { day: '11-23', prompt: 0, completion: 0, runs: 0 },
      { day: '11-24', prompt: 10, completion: 5, runs: 1 },
      { day: '11-25', prompt: 0, completion: 0, runs: 0 },
    ]);
  });
});
