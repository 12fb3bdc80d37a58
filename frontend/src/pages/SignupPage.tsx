import { useState, type FormEvent } from 'react';
import { Link, useNavigate } from 'react-router';
import { useQueryClient } from '@tanstack/react-query';
import { publicApi, unwrap } from '../api/client';
import { FormError } from '../components/ErrorAlert';
import { tokensFrom, useAuth } from '../state/auth';

const SLUG = '^[a-z0-9]([a-z0-9-]{1,61}[a-z0-9])?$';

export function SignupPage() {
  const navigate = useNavigate();
  const queryClient = useQueryClient();
  const [tenantName, setTenantName] = useState('');
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [displayName, setDisplayName] = useState('');
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);

  const onSubmit = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const body = await unwrap(
        publicApi.POST('/api/v1/auth/signup', {
          body: {
            tenant_name: tenantName.trim(),
            email: email.trim(),
            password,
            ...(displayName.trim() ? { display_name: displayName.trim() } : {}),
          },
        }),
      );
      queryClient.clear();
      useAuth.getState().signedIn(tokensFrom(body), body.tenant.name);
      navigate('/agents', { replace: true });
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  return (
    <div className="auth-page">
      <form className="auth-card" onSubmit={onSubmit}>
        <div className="brand auth-brand">
          <span className="brand-mark" aria-hidden="true">A</span> Agent PaaS
        </div>
        <h1>Create a tenant</h1>
        <p className="muted">You will be its first admin.</p>
        <div className="field">
          <label htmlFor="signup-tenant">Tenant name</label>
          <input
            id="signup-tenant"
            value={tenantName}
            onChange={(e) => setTenantName(e.target.value)}
            pattern={SLUG}
            minLength={3}
            maxLength={63}
            required
            autoCapitalize="none"
            spellCheck={false}
            aria-describedby="signup-tenant-help"
          />
          <small id="signup-tenant-help" className="help">
            3–63 lowercase letters, digits and hyphens, e.g. <code>acme</code>. You log in with it.
          </small>
        </div>
        <div className="field">
          <label htmlFor="signup-email">Email</label>
          <input
            id="signup-email"
            type="email"
            value={email}
            onChange={(e) => setEmail(e.target.value)}
            autoComplete="email"
            required
          />
        </div>
        <div className="field">
          <label htmlFor="signup-password">Password</label>
          <input
            id="signup-password"
            type="password"
            value={password}
            onChange={(e) => setPassword(e.target.value)}
            autoComplete="new-password"
            minLength={10}
            required
            aria-describedby="signup-password-help"
          />
          <small id="signup-password-help" className="help">
            At least 10 characters.
          </small>
        </div>
        <div className="field">
          <label htmlFor="signup-display-name">Display name (optional)</label>
          <input
            id="signup-display-name"
            value={displayName}
            onChange={(e) => setDisplayName(e.target.value)}
            maxLength={100}
            autoComplete="name"
          />
        </div>
        <FormError error={error} />
        <button type="submit" className="btn btn-primary btn-block" disabled={busy}>
          {busy ? 'Creating…' : 'Sign up'}
        </button>
        <p className="auth-switch">
          Already have an account? <Link to="/login">Log in</Link>
        </p>
      </form>
    </div>
  );
}
