import { useEffect, useState, type FormEvent } from 'react';
import { Link, useLocation, useNavigate, useParams } from 'react-router';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { api, expectOk, unwrap, type Agent, type Schemas } from '../api/client';
import { keys, useAgent } from '../api/queries';
import { ChatPanel } from '../chat/ChatPanel';
import { ErrorAlert, FormError } from '../components/ErrorAlert';
import { Loading } from '../components/Loading';
import { formatDateTime } from '../components/format';
import { usePermissions } from '../state/usePermissions';
import { BUILTIN_TOOLS } from '../state/tools';

interface FormState {
  name: string;
  display_name: string;
  description: string;
  system_prompt: string;
  provider_id: string;
  model: string;
  temperature: string;
  tools: string[];
  max_tokens: string;
  max_steps: string;
  timeout_seconds: string;
}

function toForm(agent: Agent | undefined): FormState {
  return {
    name: agent?.name ?? '',
    display_name: agent?.display_name ?? '',
    description: agent?.description ?? '',
    system_prompt: agent?.system_prompt ?? '',
    provider_id: agent?.provider_id ?? 'mock',
    model: agent?.model ?? '',
    temperature: agent?.temperature === null || agent?.temperature === undefined ? '' : String(agent.temperature),
    tools: agent?.tools ?? [],
    max_tokens: String(agent?.max_tokens ?? 1024),
    max_steps: String(agent?.max_steps ?? 8),
    timeout_seconds: String(agent?.timeout_seconds ?? 120),
  };
}

function intOrNull(value: string): number | null {
  const trimmed = value.trim();
  return trimmed === '' ? null : Math.trunc(Number(trimmed));
}

function toCreateBody(form: FormState): Schemas['CreateAgentRequest'] {
  return {
    name: form.name.trim(),
    display_name: form.display_name.trim() || null,
    description: form.description,
    system_prompt: form.system_prompt,
    provider_id: form.provider_id,
    model: form.model.trim() || null,
    temperature: form.temperature.trim() === '' ? null : Number(form.temperature),
    tools: form.tools,
    max_tokens: intOrNull(form.max_tokens),
    max_steps: intOrNull(form.max_steps),
    timeout_seconds: intOrNull(form.timeout_seconds),
  };
}

function toUpdateBody(form: FormState, agent: Agent): Schemas['UpdateAgentRequest'] {
  const body: Schemas['UpdateAgentRequest'] = {
    name: form.name.trim(),
    display_name: form.display_name.trim() || agent.name,
    description: form.description,
    system_prompt: form.system_prompt,
    provider_id: form.provider_id,
    // A new provider without a model takes the provider's default model.
    model: form.model.trim() || (form.provider_id !== agent.provider_id ? null : agent.model),
    temperature: form.temperature.trim() === '' ? null : Number(form.temperature),
    tools: form.tools,
    max_tokens: intOrNull(form.max_tokens),
    max_steps: intOrNull(form.max_steps),
    timeout_seconds: intOrNull(form.timeout_seconds),
  };
  if (body.model === null) delete body.model;
  if (body.max_tokens === null) delete body.max_tokens;
  if (body.max_steps === null) delete body.max_steps;
  if (body.timeout_seconds === null) delete body.timeout_seconds;
  return body;
}

function useProviderOptions(enabled: boolean) {
  return useQuery({
    queryKey: keys.providers,
    queryFn: () => unwrap(api.GET('/api/v1/providers')),
    enabled,
  });
}

function AgentForm({ agent, onSaved }: { agent?: Agent; onSaved: (agent: Agent) => void }) {
  const queryClient = useQueryClient();
  const [form, setForm] = useState<FormState>(() => toForm(agent));
  const providers = useProviderOptions(true);
  const set = <K extends keyof FormState>(key: K, value: FormState[K]) => setForm((f) => ({ ...f, [key]: value }));

  const save = useMutation({
    mutationFn: async () =>
      agent
        ? unwrap(api.PATCH('/api/v1/agents/{id}', { params: { path: { id: agent.id } }, body: toUpdateBody(form, agent) }))
        : unwrap(api.POST('/api/v1/agents', { body: toCreateBody(form) })),
    onSuccess: (saved) => {
      queryClient.setQueryData(keys.agent(saved.id), saved);
      void queryClient.invalidateQueries({ queryKey: keys.agents });
      void queryClient.invalidateQueries({ queryKey: keys.quota });
      onSaved(saved);
    },
  });

  const onSubmit = (event: FormEvent) => {
    event.preventDefault();
    save.mutate();
  };

  const providerOptions: { value: string; label: string }[] = [{ value: 'mock', label: 'Built-in mock model (no key)' }];
  for (const kind of providers.data?.platform ?? []) {
    providerOptions.push({ value: `platform:${kind}`, label: `Platform ${kind}` });
  }
  for (const provider of providers.data?.items ?? []) {
    providerOptions.push({ value: provider.id, label: `${provider.name} (${provider.kind})` });
  }
  if (!providerOptions.some((option) => option.value === form.provider_id)) {
    providerOptions.push({ value: form.provider_id, label: form.provider_id });
  }

  return (
    <form className="form card" onSubmit={onSubmit} aria-label={agent ? 'Edit agent' : 'New agent'}>
      <div className="form-grid">
        <div className="field">
          <label htmlFor="agent-name">Name</label>
          <input
            id="agent-name"
            value={form.name}
            onChange={(e) => set('name', e.target.value)}
            pattern="^[a-z0-9][a-z0-9._-]{0,62}$"
            maxLength={63}
            required
            autoCapitalize="none"
            spellCheck={false}
            aria-describedby="agent-name-help"
          />
          <small id="agent-name-help" className="help">
            Lowercase slug; it is the <code>model</code> in the OpenAI-compatible API.
          </small>
        </div>
        <div className="field">
          <label htmlFor="agent-display-name">Display name</label>
          <input id="agent-display-name" value={form.display_name} onChange={(e) => set('display_name', e.target.value)} maxLength={200} placeholder="Defaults to the name" />
        </div>
        <div className="field field-wide">
          <label htmlFor="agent-description">Description</label>
          <input id="agent-description" value={form.description} onChange={(e) => set('description', e.target.value)} maxLength={2000} />
        </div>
        <div className="field field-wide">
          <label htmlFor="agent-system-prompt">System prompt</label>
          <textarea id="agent-system-prompt" value={form.system_prompt} onChange={(e) => set('system_prompt', e.target.value)} rows={5} maxLength={32000} />
        </div>
        <div className="field">
          <label htmlFor="agent-provider">Provider</label>
          <select id="agent-provider" value={form.provider_id} onChange={(e) => set('provider_id', e.target.value)}>
            {providerOptions.map((option) => (
              <option key={option.value} value={option.value}>
                {option.label}
              </option>
            ))}
          </select>
        </div>
        <div className="field">
          <label htmlFor="agent-model">Model</label>
          <input id="agent-model" value={form.model} onChange={(e) => set('model', e.target.value)} maxLength={200} placeholder="The provider's default" />
        </div>
        <div className="field">
          <label htmlFor="agent-temperature">Temperature</label>
          <input id="agent-temperature" type="number" min={0} max={2} step={0.1} value={form.temperature} onChange={(e) => set('temperature', e.target.value)} placeholder="Provider default" />
        </div>
        <fieldset className="field field-wide fieldset">
          <legend>Tools</legend>
          {BUILTIN_TOOLS.map((tool) => (
            <label key={tool.name} className="check">
              <input
                type="checkbox"
                checked={form.tools.includes(tool.name)}
                onChange={(e) =>
                  set('tools', e.target.checked ? [...form.tools, tool.name] : form.tools.filter((t) => t !== tool.name))
                }
              />
              <span>
                <code>{tool.name}</code> <span className="muted">— {tool.description}</span>
              </span>
            </label>
          ))}
        </fieldset>
        <div className="field">
          <label htmlFor="agent-max-tokens">Max tokens per run</label>
          <input id="agent-max-tokens" type="number" min={1} max={32768} value={form.max_tokens} onChange={(e) => set('max_tokens', e.target.value)} />
        </div>
        <div className="field">
          <label htmlFor="agent-max-steps">Max steps per run</label>
          <input id="agent-max-steps" type="number" min={1} max={32} value={form.max_steps} onChange={(e) => set('max_steps', e.target.value)} />
        </div>
        <div className="field">
          <label htmlFor="agent-timeout">Timeout (seconds)</label>
          <input id="agent-timeout" type="number" min={1} max={600} value={form.timeout_seconds} onChange={(e) => set('timeout_seconds', e.target.value)} />
        </div>
      </div>
      <FormError error={save.error} />
      <div className="form-actions">
        <button type="submit" className="btn btn-primary" disabled={save.isPending}>
          {save.isPending ? 'Saving…' : agent ? 'Save changes' : 'Create agent'}
        </button>
        {save.isSuccess && agent && <span className="saved-note" role="status">Saved.</span>}
      </div>
    </form>
  );
}

function AgentDetails({ agent }: { agent: Agent }) {
  const rows: [string, string][] = [
    ['Name', agent.name],
    ['Provider', agent.provider_id],
    ['Model', agent.model],
    ['Temperature', agent.temperature === null || agent.temperature === undefined ? 'provider default' : String(agent.temperature)],
    ['Tools', agent.tools.join(', ') || 'none'],
    ['Max tokens', String(agent.max_tokens)],
    ['Max steps', String(agent.max_steps)],
    ['Timeout', `${agent.timeout_seconds} s`],
    ['Updated', formatDateTime(agent.updated_at)],
  ];
  return (
    <section className="card">
      <dl className="details">
        {rows.map(([k, v]) => (
          <div key={k} className="details-row">
            <dt>{k}</dt>
            <dd>{v}</dd>
          </div>
        ))}
      </dl>
      {agent.description && <p>{agent.description}</p>}
      {agent.system_prompt && (
        <>
          <h3>System prompt</h3>
          <pre className="prompt">{agent.system_prompt}</pre>
        </>
      )}
    </section>
  );
}

function TryIt({ agent, canChat }: { agent: Agent; canChat: boolean }) {
  const [sessionId, setSessionId] = useState<string | null>(null);
  const [round, setRound] = useState(0);
  return (
    <section className="card try-it" id="try" aria-labelledby="try-title">
      <div className="section-header">
        <h2 id="try-title">Try it</h2>
        {sessionId && (
          <div className="header-actions">
            <Link to={`/chat/${sessionId}`} className="btn btn-small btn-ghost">
              Open in chat
            </Link>
            <button type="button" className="btn btn-small btn-ghost" onClick={() => {
                setSessionId(null);
                setRound((r) => r + 1);
              }}
            >
              Start over
            </button>
          </div>
        )}
      </div>
      <ChatPanel
        key={round}
        sessionId={sessionId}
        agent={agent.id}
        canChat={canChat}
        onSessionStarted={setSessionId}
        compact
        emptyNote={`Send a message to ${agent.display_name}. The conversation is saved in your sessions.`}
        readOnlyNote="Viewers cannot chat."
      />
    </section>
  );
}

export function AgentPage() {
  const { agentId } = useParams();
  const isNew = agentId === undefined;
  const navigate = useNavigate();
  const queryClient = useQueryClient();
  const { writeAgents, chat } = usePermissions();
  const agent = useAgent(agentId);
  const { hash } = useLocation();
  const loaded = agent.isSuccess;
  useEffect(() => {
    // "Try it" links here with #try.
    if (loaded && hash === '#try') document.getElementById('try')?.scrollIntoView?.({ behavior: 'smooth' });
  }, [loaded, hash]);

  const remove = useMutation({
    mutationFn: (id: string) => expectOk(api.DELETE('/api/v1/agents/{id}', { params: { path: { id } } })),
    onSuccess: () => {
      void queryClient.invalidateQueries({ queryKey: keys.agents });
      void queryClient.invalidateQueries({ queryKey: keys.quota });
      navigate('/agents');
    },
  });

  if (isNew) {
    if (!writeAgents) {
      return (
        <div className="page">
          <h1>New agent</h1>
          <p className="muted">Only admins can create agents.</p>
        </div>
      );
    }
    return (
      <div className="page">
        <header className="page-header">
          <h1>New agent</h1>
          <Link to="/agents" className="btn btn-ghost">
            Back to agents
          </Link>
        </header>
        <AgentForm onSaved={(saved) => navigate(`/agents/${saved.id}`, { replace: true })} />
      </div>
    );
  }

  if (agent.isLoading) return <Loading />;
  if (agent.error || !agent.data) return <div className="page"><ErrorAlert error={agent.error ?? new Error('Agent not found')} /></div>;
  const data = agent.data;

  return (
    <div className="page">
      <header className="page-header">
        <div>
          <h1>{data.display_name}</h1>
          <p className="muted">
            <code>{data.name}</code> · {data.provider_id} / {data.model}
          </p>
        </div>
        <div className="header-actions">
          <Link to="/agents" className="btn btn-ghost">
            Back to agents
          </Link>
          {writeAgents && (
            <button
              type="button"
              className="btn btn-danger"
              disabled={remove.isPending}
              onClick={() => {
                if (window.confirm(`Delete the agent "${data.name}"? Its sessions stay readable.`)) remove.mutate(data.id);
              }}
            >
              Delete agent
            </button>
          )}
        </div>
      </header>
      <FormError error={remove.error} />
      <div className="two-col">
        {writeAgents ? <AgentForm key={data.id} agent={data} onSaved={() => undefined} /> : <AgentDetails agent={data} />}
        {chat && <TryIt agent={data} canChat={chat} />}
      </div>
    </div>
  );
}
