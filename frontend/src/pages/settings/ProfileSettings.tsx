import { useState, type FormEvent } from 'react';
import { useMutation, useQueryClient } from '@tanstack/react-query';
import { api, expectOk, unwrap } from '../../api/client';
import { keys, useMe } from '../../api/queries';
import { FormError } from '../../components/ErrorAlert';
import { Loading } from '../../components/Loading';

function DisplayNameForm({ initial }: { initial: string }) {
  const queryClient = useQueryClient();
  const [displayName, setDisplayName] = useState(initial);
  const save = useMutation({
    mutationFn: (display_name: string) => unwrap(api.PATCH('/api/v1/me', { body: { display_name } })),
    onSuccess: () => void queryClient.invalidateQueries({ queryKey: keys.me }),
  });
  const onSubmit = (event: FormEvent) => {
    event.preventDefault();
    save.mutate(displayName.trim());
  };
  return (
    <form className="card form" onSubmit={onSubmit}>
      <h2>Profile</h2>
      <div className="field">
        <label htmlFor="profile-display-name">Display name</label>
        <input id="profile-display-name" value={displayName} onChange={(e) => setDisplayName(e.target.value)} minLength={1} maxLength={100} required />
      </div>
      <FormError error={save.error} />
      <div className="form-actions">
        <button type="submit" className="btn btn-primary" disabled={save.isPending}>
          Save profile
        </button>
        {save.isSuccess && <span className="saved-note" role="status">Saved.</span>}
      </div>
    </form>
  );
}

function PasswordForm() {
  const [current, setCurrent] = useState('');
  const [next, setNext] = useState('');
  const [confirm, setConfirm] = useState('');
  const [mismatch, setMismatch] = useState(false);
  const change = useMutation({
    mutationFn: () =>
      expectOk(api.POST('/api/v1/me/password', { body: { current_password: current, new_password: next } })),
    onSuccess: () => {
      setCurrent('');
      setNext('');
      setConfirm('');
    },
  });
  const onSubmit = (event: FormEvent) => {
    event.preventDefault();
    if (next !== confirm) {
      setMismatch(true);
      return;
    }
    setMismatch(false);
    change.mutate();
  };
  return (
    <form className="card form" onSubmit={onSubmit}>
      <h2>Change password</h2>
      <p className="muted">Your other sessions are logged out; this one stays.</p>
      <div className="field">
        <label htmlFor="pw-current">Current password</label>
        <input id="pw-current" type="password" value={current} onChange={(e) => setCurrent(e.target.value)} autoComplete="current-password" required />
      </div>
      <div className="field">
        <label htmlFor="pw-new">New password</label>
        <input id="pw-new" type="password" value={next} onChange={(e) => setNext(e.target.value)} autoComplete="new-password" minLength={10} required />
      </div>
      <div className="field">
        <label htmlFor="pw-confirm">Confirm new password</label>
        <input id="pw-confirm" type="password" value={confirm} onChange={(e) => setConfirm(e.target.value)} autoComplete="new-password" minLength={10} required />
      </div>
      {mismatch && <p className="form-error" role="alert">The new passwords do not match.</p>}
      <FormError error={change.error} />
      <div className="form-actions">
        <button type="submit" className="btn btn-primary" disabled={change.isPending}>
          Change password
        </button>
        {change.isSuccess && <span className="saved-note" role="status">Password changed.</span>}
      </div>
    </form>
  );
}

export function ProfileSettings() {
  const me = useMe();
  if (!me.data) return <Loading />;
  const { user, tenant, role } = me.data;
  return (
    <div className="stack">
      <section className="card">
        <dl className="details">
          <div className="details-row"><dt>Email</dt><dd>{user.email}</dd></div>
          <div className="details-row"><dt>Role</dt><dd>{role}</dd></div>
          <div className="details-row"><dt>Tenant</dt><dd>{tenant.display_name} (<code>{tenant.name}</code>)</dd></div>
          <div className="details-row"><dt>Plan</dt><dd>{tenant.plan}</dd></div>
        </dl>
      </section>
      <DisplayNameForm key={user.display_name} initial={user.display_name} />
      <PasswordForm />
    </div>
  );
}
