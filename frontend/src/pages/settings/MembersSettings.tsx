import { useState, type FormEvent } from 'react';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { api, expectOk, unwrap, type Role, type Schemas, type User } from '../../api/client';
import { keys } from '../../api/queries';
import { CopyButton } from '../../components/CopyButton';
import { ErrorAlert, FormError } from '../../components/ErrorAlert';
import { Loading } from '../../components/Loading';
import { formatRelative } from '../../components/format';
import { usePermissions } from '../../state/usePermissions';

const ROLES: { value: Role; label: string }[] = [
  { value: 'admin', label: 'Admin' },
  { value: 'user', label: 'User' },
  { value: 'viewer', label: 'Viewer' },
];

function InviteForm({ onInvited }: { onInvited: (response: Schemas['CreateUserResponse']) => void }) {
  const queryClient = useQueryClient();
  const [email, setEmail] = useState('');
  const [role, setRole] = useState<Role>('user');
  const [displayName, setDisplayName] = useState('');
  const [password, setPassword] = useState('');
  const invite = useMutation({
    mutationFn: () =>
      unwrap(
        api.POST('/api/v1/users', {
          body: {
            email: email.trim(),
            role,
            ...(displayName.trim() ? { display_name: displayName.trim() } : {}),
            ...(password ? { password } : {}),
          },
        }),
      ),
    onSuccess: (response) => {
      setEmail('');
      setDisplayName('');
      setPassword('');
      onInvited(response);
      void queryClient.invalidateQueries({ queryKey: keys.users });
      void queryClient.invalidateQueries({ queryKey: keys.quota });
    },
  });
  const onSubmit = (event: FormEvent) => {
    event.preventDefault();
    invite.mutate();
  };
  return (
    <form className="card form" onSubmit={onSubmit} aria-label="Invite member">
      <h2>Invite a member</h2>
      <div className="form-grid">
        <div className="field">
          <label htmlFor="invite-email">Email</label>
          <input id="invite-email" type="email" value={email} onChange={(e) => setEmail(e.target.value)} required />
        </div>
        <div className="field">
          <label htmlFor="invite-role">Role</label>
          <select id="invite-role" value={role} onChange={(e) => setRole(e.target.value as Role)}>
            {ROLES.map((r) => (
              <option key={r.value} value={r.value}>
                {r.label}
              </option>
            ))}
          </select>
        </div>
        <div className="field">
          <label htmlFor="invite-display-name">Display name (optional)</label>
          <input id="invite-display-name" value={displayName} onChange={(e) => setDisplayName(e.target.value)} maxLength={100} />
        </div>
        <div className="field">
          <label htmlFor="invite-password">Password (optional)</label>
          <input
            id="invite-password"
            type="password"
            value={password}
            onChange={(e) => setPassword(e.target.value)}
            minLength={10}
            autoComplete="new-password"
            aria-describedby="invite-password-help"
          />
          <small id="invite-password-help" className="help">
            Leave empty to get a one-time temporary password.
          </small>
        </div>
      </div>
      <FormError error={invite.error} />
      <div className="form-actions">
        <button type="submit" className="btn btn-primary" disabled={invite.isPending}>
          Invite
        </button>
      </div>
    </form>
  );
}

function MemberRow({ user, isSelf }: { user: User; isSelf: boolean }) {
  const queryClient = useQueryClient();
  const update = useMutation({
    mutationFn: (body: Schemas['UpdateUserRequest']) =>
      unwrap(api.PATCH('/api/v1/users/{id}', { params: { path: { id: user.id } }, body })),
    onSuccess: () => {
      void queryClient.invalidateQueries({ queryKey: keys.users });
      if (isSelf) void queryClient.invalidateQueries({ queryKey: keys.me });
    },
  });
  const deactivate = useMutation({
    mutationFn: () => expectOk(api.DELETE('/api/v1/users/{id}', { params: { path: { id: user.id } } })),
    onSuccess: () => void queryClient.invalidateQueries({ queryKey: keys.users }),
  });
  const active = user.status === 'active';
  return (
    <tr className={active ? '' : 'row-revoked'}>
      <td>
        <div>{user.display_name}{isSelf && <span className="chip chip-muted">you</span>}</div>
        <div className="muted small">{user.email}</div>
      </td>
      <td>
        <label htmlFor={`role-${user.id}`} className="visually-hidden">
          Role of {user.email}
        </label>
        <select
          id={`role-${user.id}`}
          value={user.role}
          disabled={update.isPending || !active}
          onChange={(e) => update.mutate({ role: e.target.value as Role })}
        >
          {ROLES.map((r) => (
            <option key={r.value} value={r.value}>
              {r.label}
            </option>
          ))}
        </select>
      </td>
      <td>{active ? 'active' : 'deactivated'}</td>
      <td>{formatRelative(user.last_login_at)}</td>
      <td>
        {isSelf ? null : active ? (
          <button
            type="button"
            className="btn btn-small btn-danger-ghost"
            aria-label={`Deactivate ${user.email}`}
            disabled={deactivate.isPending}
            onClick={() => {
              if (window.confirm(`Deactivate ${user.email}? Their sessions end and their API keys are revoked.`)) deactivate.mutate();
            }}
          >
            Deactivate
          </button>
        ) : (
          <button type="button" className="btn btn-small" aria-label={`Reactivate ${user.email}`} onClick={() => update.mutate({ status: 'active' })}>
            Reactivate
          </button>
        )}
        <FormError error={update.error ?? deactivate.error} />
      </td>
    </tr>
  );
}

export function MembersSettings() {
  const { me } = usePermissions();
  const [invited, setInvited] = useState<Schemas['CreateUserResponse'] | null>(null);
  const users = useQuery({
    queryKey: keys.users,
    queryFn: async () => (await unwrap(api.GET('/api/v1/users', { params: { query: { limit: 200 } } }))).items,
  });
  return (
    <div className="stack">
      {invited && (
        <div className="secret-box" role="status" aria-label="Invited member">
          <h3>{invited.user.email} was invited as {invited.user.role}</h3>
          {invited.temporary_password ? (
            <>
              <p>
                Send them this temporary password; <strong>it is shown only once</strong>. They can change it in Settings.
              </p>
              <div className="secret-row">
                <code className="secret" data-testid="temporary-password">{invited.temporary_password}</code>
                <CopyButton text={invited.temporary_password} label="Copy password" />
              </div>
            </>
          ) : (
            <p>They can log in with the password you chose.</p>
          )}
          <button type="button" className="btn btn-small" onClick={() => setInvited(null)}>
            Done
          </button>
        </div>
      )}
      <InviteForm onInvited={setInvited} />
      <section className="card">
        <h2>Members</h2>
        {users.isLoading && <Loading />}
        {users.error && <ErrorAlert error={users.error} />}
        {users.data && (
          <div className="table-wrap">
            <table className="table">
              <thead>
                <tr>
                  <th>Member</th>
                  <th>Role</th>
                  <th>Status</th>
                  <th>Last login</th>
                  <th><span className="visually-hidden">Actions</span></th>
                </tr>
              </thead>
              <tbody>
                {users.data.map((user) => (
                  <MemberRow key={user.id} user={user} isSelf={user.id === me?.user.id} />
                ))}
              </tbody>
            </table>
          </div>
        )}
      </section>
    </div>
  );
}
