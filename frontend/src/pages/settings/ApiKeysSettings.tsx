import { useState, type FormEvent } from 'react';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { api, expectOk, unwrap, type Schemas, type Scope } from '../../api/client';
import { keys } from '../../api/queries';
import { CopyButton } from '../../components/CopyButton';
import { ErrorAlert, FormError } from '../../components/ErrorAlert';
import { Loading } from '../../components/Loading';
import { formatDateTime } from '../../components/format';
import { SCOPE_DESCRIPTIONS } from '../../state/permissions';
import { usePermissions } from '../../state/usePermissions';

type Created = Schemas['CreateApiKeyResponse'];

function NewKeySecret({ created, onClose }: { created: Created; onClose: () => void }) {
  return (
    <div className="secret-box" role="status" aria-label="New API key">
      <h3>Your new key “{created.name}”</h3>
      <p>
        Copy it now: <strong>it is shown only once</strong>. The server keeps only its hash.
      </p>
      <div className="secret-row">
        <code className="secret" data-testid="new-api-key">
          {created.key}
        </code>
        <CopyButton text={created.key} label="Copy key" />
      </div>
      <button type="button" className="btn btn-small" onClick={onClose}>
        I have saved it
      </button>
    </div>
  );
}

function CreateKeyForm({ scopes, onCreated }: { scopes: Scope[]; onCreated: (created: Created) => void }) {
  const queryClient = useQueryClient();
  const [name, setName] = useState('');
  const [picked, setPicked] = useState<Scope[]>(scopes.includes('chat') ? ['chat'] : scopes.slice(0, 1));
  const [days, setDays] = useState('90');
  const create = useMutation({
    mutationFn: () =>
      unwrap(
        api.POST('/api/v1/api-keys', {
          body: { name: name.trim(), scopes: picked, ...(days ? { expires_in_days: Number(days) } : {}) },
        }),
      ),
    onSuccess: (created) => {
      setName('');
      onCreated(created);
      void queryClient.invalidateQueries({ queryKey: keys.apiKeys });
    },
  });
  const onSubmit = (event: FormEvent) => {
    event.preventDefault();
    create.mutate();
  };
  return (
    <form className="card form" onSubmit={onSubmit} aria-label="Create API key">
      <h2>Create a key</h2>
      <div className="form-grid">
        <div className="field">
          <label htmlFor="key-name">Key name</label>
          <input id="key-name" value={name} onChange={(e) => setName(e.target.value)} maxLength={100} required placeholder="e.g. ci pipeline" />
        </div>
        <div className="field">
          <label htmlFor="key-expiry">Expires in (days)</label>
          <input id="key-expiry" type="number" min={1} max={365} value={days} onChange={(e) => setDays(e.target.value)} required />
        </div>
        <fieldset className="field field-wide fieldset">
          <legend>Scopes</legend>
          {scopes.map((scope) => (
            <label key={scope} className="check">
              <input
                type="checkbox"
                checked={picked.includes(scope)}
                onChange={(e) => setPicked(e.target.checked ? [...picked, scope] : picked.filter((s) => s !== scope))}
              />
              <span>
                <code>{scope}</code> <span className="muted">— {SCOPE_DESCRIPTIONS[scope]}</span>
              </span>
            </label>
          ))}
        </fieldset>
      </div>
      <FormError error={create.error} />
      <div className="form-actions">
        <button type="submit" className="btn btn-primary" disabled={create.isPending || picked.length === 0}>
          Create key
        </button>
      </div>
    </form>
  );
}

export function ApiKeysSettings() {
  const queryClient = useQueryClient();
  const { mintableScopes, manageMembers, me } = usePermissions();
  const [created, setCreated] = useState<Created | null>(null);
  const [showRevoked, setShowRevoked] = useState(false);
  const list = useQuery({
    queryKey: [...keys.apiKeys, showRevoked],
    queryFn: async () =>
      (await unwrap(api.GET('/api/v1/api-keys', { params: { query: { include_revoked: showRevoked } } }))).items,
  });
  const revoke = useMutation({
    mutationFn: (id: string) => expectOk(api.DELETE('/api/v1/api-keys/{id}', { params: { path: { id } } })),
    onSuccess: () => void queryClient.invalidateQueries({ queryKey: keys.apiKeys }),
  });

  return (
    <div className="stack">
      {created && <NewKeySecret created={created} onClose={() => setCreated(null)} />}
      {mintableScopes.length > 0 && <CreateKeyForm key={mintableScopes.join()} scopes={mintableScopes} onCreated={setCreated} />}
      <section className="card">
        <div className="section-header">
          <h2>{manageMembers ? 'Keys in this tenant' : 'Your keys'}</h2>
          <label className="check">
            <input type="checkbox" checked={showRevoked} onChange={(e) => setShowRevoked(e.target.checked)} />
            <span>Show revoked</span>
          </label>
        </div>
        {list.isLoading && <Loading />}
        {list.error && <ErrorAlert error={list.error} />}
        <FormError error={revoke.error} />
        {list.data && list.data.length === 0 && <p className="empty-note">No keys.</p>}
        {list.data && list.data.length > 0 && (
          <div className="table-wrap">
            <table className="table">
              <thead>
                <tr>
                  <th>Name</th>
                  <th>Prefix</th>
                  <th>Scopes</th>
                  <th>Expires</th>
                  <th>Last used</th>
                  <th><span className="visually-hidden">Actions</span></th>
                </tr>
              </thead>
              <tbody>
                {list.data.map((key) => (
                  <tr key={key.id} className={key.revoked_at ? 'row-revoked' : ''}>
                    <td>
                      {key.name}
                      {manageMembers && me && key.user_id !== me.user.id && <span className="chip chip-muted">other user</span>}
                    </td>
                    <td><code>{key.prefix}…</code></td>
                    <td>{key.scopes.join(', ')}</td>
                    <td>{formatDateTime(key.expires_at)}</td>
                    <td>{formatDateTime(key.last_used_at)}</td>
                    <td>
                      {key.revoked_at ? (
                        <span className="muted">revoked</span>
                      ) : (
                        <button
                          type="button"
                          className="btn btn-small btn-danger-ghost"
                          aria-label={`Revoke ${key.name}`}
                          disabled={revoke.isPending}
                          onClick={() => {
                            if (window.confirm(`Revoke the key "${key.name}"? It stops working at once.`)) revoke.mutate(key.id);
                          }}
                        >
                          Revoke
                        </button>
                      )}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </section>
    </div>
  );
}
