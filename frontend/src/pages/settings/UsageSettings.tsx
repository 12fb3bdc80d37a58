import { useState } from 'react';
import { useQuery } from '@tanstack/react-query';
import { Bar, BarChart, CartesianGrid, Legend, ResponsiveContainer, Tooltip, XAxis, YAxis } from 'recharts';
import { api, unwrap, type QuotaStatus, type UsageReport } from '../../api/client';
import { keys } from '../../api/queries';
import { ErrorAlert } from '../../components/ErrorAlert';
import { Loading } from '../../components/Loading';
import { compactNumber, formatDateTime, formatNumber } from '../../components/format';
import { dayRange, fillDays } from './usageData';

const RANGES = [
  { days: 7, label: 'Last 7 days' },
  { days: 30, label: 'Last 30 days' },
  { days: 90, label: 'Last 90 days' },
];

function Meter({ label, used, limit, extra }: { label: string; used: number; limit: number; extra?: string }) {
  const percent = limit > 0 ? Math.min(100, Math.round((used / limit) * 100)) : 0;
  const level = percent >= 90 ? 'meter-danger' : percent >= 70 ? 'meter-warn' : '';
  return (
    <div className="meter-card">
      <div className="meter-head">
        <span className="meter-label">{label}</span>
        <span className="meter-value" title={`${formatNumber(used)} of ${formatNumber(limit)}`}>
          {limit >= 100_000 ? `${compactNumber(used)} / ${compactNumber(limit)}` : `${formatNumber(used)} / ${formatNumber(limit)}`}
        </span>
      </div>
      <div
        className={`meter ${level}`}
        role="meter"
        aria-label={label}
        aria-valuemin={0}
        aria-valuemax={limit}
        aria-valuenow={used}
      >
        <div className="meter-fill" style={{ width: `${percent}%` }} />
      </div>
      {extra && <div className="meter-extra">{extra}</div>}
    </div>
  );
}

function QuotaPanel({ quota }: { quota: QuotaStatus }) {
  const { usage, limits } = quota;
  return (
    <section className="card">
      <div className="section-header">
        <h2>Plan and quotas</h2>
        <span className={`plan-badge plan-${quota.plan}`}>{quota.plan} plan</span>
      </div>
      <div className="meter-grid">
        <Meter
          label="Tokens this month"
          used={usage.tokens_this_month.used + usage.tokens_this_month.reserved}
          limit={usage.tokens_this_month.limit}
          extra={`${formatNumber(usage.tokens_this_month.used)} used, ${formatNumber(usage.tokens_this_month.reserved)} reserved by running answers, ${formatNumber(usage.tokens_this_month.remaining)} left · resets ${formatDateTime(usage.tokens_this_month.resets_at)}`}
        />
        <Meter
          label="Sessions today"
          used={usage.sessions_today.used}
          limit={usage.sessions_today.limit}
          extra={`resets ${formatDateTime(usage.sessions_today.resets_at)}`}
        />
        <Meter label="Users" used={usage.users.used} limit={usage.users.limit} />
        <Meter label="Agents" used={usage.agents.used} limit={usage.agents.limit} />
        <Meter label="Runs in progress" used={usage.runs_in_progress.used} limit={usage.runs_in_progress.limit} />
      </div>
      <dl className="details details-compact">
        <div className="details-row"><dt>Requests per minute (tenant)</dt><dd>{formatNumber(limits.requests_per_minute)}</dd></div>
        <div className="details-row"><dt>Requests per minute (per API key)</dt><dd>{formatNumber(limits.key_requests_per_minute)}</dd></div>
        <div className="details-row"><dt>Concurrent runs</dt><dd>{formatNumber(limits.max_concurrent_runs)}</dd></div>
      </dl>
    </section>
  );
}

function useUsage(from: string, to: string, groupBy: 'day' | 'agent' | 'model') {
  return useQuery({
    queryKey: keys.usage(from, to, groupBy),
    queryFn: () => unwrap(api.GET('/api/v1/usage', { params: { query: { from, to, group_by: groupBy } } })),
  });
}

const PROMPT_COLOR = '#818cf8';
const COMPLETION_COLOR = '#4f46e5';

function GroupChart({ title, report }: { title: string; report: UsageReport | undefined }) {
  const data = (report?.groups ?? [])
    .map((row) => ({ name: row.label ?? row.key, prompt: row.prompt_tokens, completion: row.completion_tokens, total: row.total_tokens }))
    .sort((a, b) => b.total - a.total)
    .slice(0, 12);
  return (
    <section className="card chart-card">
      <h3>{title}</h3>
      {data.length === 0 ? (
        <p className="empty-note">No usage in this period.</p>
      ) : (
        <div className="chart" style={{ height: Math.max(160, data.length * 36 + 60) }}>
          <ResponsiveContainer width="100%" height="100%">
            <BarChart data={data} layout="vertical" margin={{ left: 8, right: 16 }}>
              <CartesianGrid strokeDasharray="3 3" horizontal={false} />
              <XAxis type="number" tickFormatter={compactNumber} />
              <YAxis type="category" dataKey="name" width={110} />
              <Tooltip formatter={(value) => formatNumber(Number(value))} />
              <Legend />
              <Bar dataKey="prompt" name="Prompt tokens" stackId="t" fill={PROMPT_COLOR} />
              <Bar dataKey="completion" name="Completion tokens" stackId="t" fill={COMPLETION_COLOR} />
            </BarChart>
          </ResponsiveContainer>
        </div>
      )}
    </section>
  );
}

export function UsageSettings() {
  const [days, setDays] = useState(30);
  const { from, to } = dayRange(days);
  const quota = useQuery({ queryKey: keys.quota, queryFn: () => unwrap(api.GET('/api/v1/tenant/quota')) });
  const perDay = useUsage(from, to, 'day');
  const perAgent = useUsage(from, to, 'agent');
  const perModel = useUsage(from, to, 'model');
  const totals = perDay.data?.totals;

  return (
    <div className="stack">
      {quota.isLoading && <Loading label="Loading quotas…" />}
      {quota.error && <ErrorAlert error={quota.error} />}
      {quota.data && <QuotaPanel quota={quota.data} />}
      <section className="card">
        <div className="section-header">
          <h2>Usage</h2>
          <div className="field field-inline">
            <label htmlFor="usage-range">Period</label>
            <select id="usage-range" value={days} onChange={(e) => setDays(Number(e.target.value))}>
              {RANGES.map((r) => (
                <option key={r.days} value={r.days}>
                  {r.label}
                </option>
              ))}
            </select>
          </div>
        </div>
        {perDay.data && (
          <p className="muted">
            {perDay.data.scope === 'tenant' ? 'The whole tenant' : 'Your own runs'} · {from} to {to} (UTC)
          </p>
        )}
        {perDay.error && <ErrorAlert error={perDay.error} />}
        {totals && (
          <div className="stat-grid">
            <div className="stat"><div className="stat-value">{formatNumber(totals.total_tokens)}</div><div className="stat-label">Total tokens</div></div>
            <div className="stat"><div className="stat-value">{formatNumber(totals.prompt_tokens)}</div><div className="stat-label">Prompt tokens</div></div>
            <div className="stat"><div className="stat-value">{formatNumber(totals.completion_tokens)}</div><div className="stat-label">Completion tokens</div></div>
            <div className="stat"><div className="stat-value">{formatNumber(totals.runs)}</div><div className="stat-label">Runs</div></div>
          </div>
        )}
        {perDay.isLoading && <Loading />}
        {perDay.data && (
          <div className="chart-block">
            <h3>Tokens per day</h3>
            <div className="chart" style={{ height: 260 }}>
            <ResponsiveContainer width="100%" height="100%">
              <BarChart data={fillDays(perDay.data, from, to)} margin={{ left: 0, right: 8 }}>
                <CartesianGrid strokeDasharray="3 3" vertical={false} />
                <XAxis dataKey="day" minTickGap={16} />
                <YAxis tickFormatter={compactNumber} width={48} />
                <Tooltip formatter={(value) => formatNumber(Number(value))} />
                <Legend />
                <Bar dataKey="prompt" name="Prompt tokens" stackId="t" fill={PROMPT_COLOR} />
                <Bar dataKey="completion" name="Completion tokens" stackId="t" fill={COMPLETION_COLOR} />
              </BarChart>
            </ResponsiveContainer>
            </div>
          </div>
        )}
      </section>
      <div className="two-col">
        <GroupChart title="Tokens per agent" report={perAgent.data} />
        <GroupChart title="Tokens per model" report={perModel.data} />
      </div>
    </div>
  );
}
