import { useState, type FormEvent } from 'react';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { api, expectOk, unwrap, type Provider, type Schemas } from '../../api/client';
import { keys } from '../../api/queries';
import { ErrorAlert, FormError } from '../../components/ErrorAlert';
import { Loading } from '../../components/Loading';

type Kind = Schemas['ProviderKind'];
const KINDS: { value: Kind; label: string }[] = [
  { value: 'openai', label: 'OpenAI-compatible (OpenAI, vLLM, Ollama, DeepSeek…)' },
  { value: 'anthropic', label: 'Anthropic Messages' },
  { value: 'glm', label: 'Zhipu GLM v4' },
  { value: 'mock', label: 'Mock (testing)' },
];

interface FormState {
  name: string;
  kind: Kind;
  base_url: string;
  api_key: string;
  default_model: string;
}

function ProviderForm({ provider, onDone }: { provider?: Provider; onDone: () => void }) {
  const queryClient = useQueryClient();
  const [form, setForm] = useState<FormState>({
    name: provider?.name ?? '',
    kind: provider?.kind ?? 'openai',
    base_url: provider?.base_url ?? '',
    api_key: '',
    default_model: provider?.default_model ?? '',
  });
  const set = <K extends keyof FormState>(key: K, value: FormState[K]) => setForm((f) => ({ ...f, [key]: value }));
  const prefix = provider ? `prov-${provider.id}` : 'prov-new';

  const save = useMutation({
    mutationFn: async () => {
      if (provider) {
        const body: Schemas['UpdateProviderRequest'] = {
          name: form.name.trim(),
          base_url: form.base_url.trim(),
          default_model: form.default_model.trim(),
        };
        // Write-only: an empty field keeps the stored key.
        if (form.api_key) body.api_key = form.api_key;
        return unwrap(api.PATCH('/api/v1/providers/{id}', { params: { path: { id: provider.id } }, body }));
      }
      return unwrap(
        api.POST('/api/v1/providers', {
          body: {
            name: form.name.trim(),
            kind: form.kind,
            ...(form.base_url.trim() ? { base_url: form.base_url.trim() } : {}),
            ...(form.api_key && form.kind !== 'mock' ? { api_key: form.api_key } : {}),
            ...(form.default_model.trim() ? { default_model: form.default_model.trim() } : {}),
          },
        }),
      );
    },
    onSuccess: () => {
      void queryClient.invalidateQueries({ queryKey: keys.providers });
      onDone();
    },
  });

  const onSubmit = (event: FormEvent) => {
    event.preventDefault();
    save.mutate();
  };

  return (
    <form className="form" onSubmit={onSubmit} aria-label={provider ? `Edit provider ${provider.name}` : 'Add provider'}>
      <div className="form-grid">
        <div className="field">
          <label htmlFor={`${prefix}-name`}>Provider name</label>
          <input id={`${prefix}-name`} value={form.name} onChange={(e) => set('name', e.target.value)} maxLength={63} required autoCapitalize="none" />
        </div>
        <div className="field">
          <label htmlFor={`${prefix}-kind`}>Kind</label>
          <select id={`${prefix}-kind`} value={form.kind} onChange={(e) => set('kind', e.target.value as Kind)} disabled={Boolean(provider)}>
            {KINDS.map((k) => (
              <option key={k.value} value={k.value}>
                {k.label}
              </option>
            ))}
          </select>
        </div>
        <div className="field">
          <label htmlFor={`${prefix}-base-url`}>Base URL</label>
          <input
            id={`${prefix}-base-url`}
            type="url"
            value={form.base_url}
            onChange={(e) => set('base_url', e.target.value)}
            placeholder="The kind's public API"
            disabled={form.kind === 'mock'}
          />
        </div>
        <div className="field">
          <label htmlFor={`${prefix}-api-key`}>{provider ? 'New API key' : 'API key'}</label>
          <input
            id={`${prefix}-api-key`}
            type="password"
            value={form.api_key}
            onChange={(e) => set('api_key', e.target.value)}
            autoComplete="off"
            placeholder={provider?.api_key_last4 ? `Stored key ends in ${provider.api_key_last4}; leave empty to keep it` : ''}
            required={!provider && (form.kind === 'glm' || form.kind === 'anthropic')}
            disabled={form.kind === 'mock'}
          />
        </div>
        <div className="field">
          <label htmlFor={`${prefix}-model`}>Default model</label>
          <input id={`${prefix}-model`} value={form.default_model} onChange={(e) => set('default_model', e.target.value)} maxLength={200} placeholder="e.g. gpt-4o-mini" />
        </div>
      </div>
      <p className="help">The API key is write-only: it is stored encrypted and never shown again.</p>
      <FormError error={save.error} />
      <div className="form-actions">
        <button type="submit" className="btn btn-primary" disabled={save.isPending}>
          {provider ? 'Save provider' : 'Add provider'}
        </button>
        {provider && (
          <button type="button" className="btn btn-ghost" onClick={onDone}>
            Cancel
          </button>
        )}
      </div>
    </form>
  );
}

export function ProvidersSettings() {
  const queryClient = useQueryClient();
  const [editing, setEditing] = useState<string | null>(null);
  const list = useQuery({ queryKey: keys.providers, queryFn: () => unwrap(api.GET('/api/v1/providers')) });
  const remove = useMutation({
    mutationFn: (id: string) => expectOk(api.DELETE('/api/v1/providers/{id}', { params: { path: { id } } })),
    onSuccess: () => void queryClient.invalidateQueries({ queryKey: keys.providers }),
  });
  const [formKey, setFormKey] = useState(0);

  return (
    <div className="stack">
      <section className="card">
        <h2>Model providers</h2>
        <p className="muted">
          Your tenant's own credentials for model APIs. Agents use the built-in mock model unless you point them at a provider.
          {list.data && list.data.platform.length > 0 && <> Platform providers available: {list.data.platform.map((p) => `platform:${p}`).join(', ')}.</>}
        </p>
        {list.isLoading && <Loading />}
        {list.error && <ErrorAlert error={list.error} />}
        <FormError error={remove.error} />
        {list.data && list.data.items.length === 0 && <p className="empty-note">No providers yet.</p>}
        <ul className="list">
          {list.data?.items.map((provider) => (
            <li key={provider.id} className="list-row">
              {editing === provider.id ? (
                <ProviderForm provider={provider} onDone={() => setEditing(null)} />
              ) : (
                <>
                  <div className="row-main">
                    <div className="row-title">{provider.name}</div>
                    <div className="row-meta">
                      {provider.kind} · {provider.base_url ?? 'public API'} · key {provider.api_key_last4 ? `••••${provider.api_key_last4}` : 'none'}
                      {provider.default_model && <> · default model {provider.default_model}</>}
                    </div>
                  </div>
                  <div className="row-actions">
                    <button type="button" className="btn btn-small" onClick={() => setEditing(provider.id)} aria-label={`Edit ${provider.name}`}>
                      Edit
                    </button>
                    <button
                      type="button"
                      className="btn btn-small btn-danger-ghost"
                      aria-label={`Delete ${provider.name}`}
                      onClick={() => {
                        if (window.confirm(`Delete the provider "${provider.name}"?`)) remove.mutate(provider.id);
                      }}
                    >
                      Delete
                    </button>
                  </div>
                </>
              )}
            </li>
          ))}
        </ul>
      </section>
      <section className="card">
        <h2>Add a provider</h2>
        <ProviderForm key={formKey} onDone={() => setFormKey((k) => k + 1)} />
      </section>
    </div>
  );
}
