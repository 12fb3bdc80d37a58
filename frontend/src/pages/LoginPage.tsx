import { useState, type FormEvent } from 'react';
import { Link, useLocation, useNavigate } from 'react-router';
import { useQueryClient } from '@tanstack/react-query';
import { publicApi, unwrap } from '../api/client';
import { FormError } from '../components/ErrorAlert';
import { tokensFrom, useAuth } from '../state/auth';

export function LoginPage() {
  const navigate = useNavigate();
  const location = useLocation();
  const queryClient = useQueryClient();
  const endedReason = useAuth((state) => state.endedReason);
  const lastTenant = useAuth((state) => state.lastTenant);
  const [tenant, setTenant] = useState(lastTenant ?? '');
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);

  const onSubmit = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const body = await unwrap(
        publicApi.POST('/api/v1/auth/login', { body: { tenant: tenant.trim(), email: email.trim(), password } }),
      );
      queryClient.clear();
      useAuth.getState().signedIn(tokensFrom(body), tenant.trim());
      const from = (location.state as { from?: string } | null)?.from;
      navigate(from && from !== '/login' ? from : '/chat', { replace: true });
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
        <h1>Log in</h1>
        {endedReason && (
          <div className="alert alert-warning" role="status">
            {endedReason}
          </div>
        )}
        <div className="field">
          <label htmlFor="login-tenant">Tenant</label>
          <input
            id="login-tenant"
            value={tenant}
            onChange={(e) => setTenant(e.target.value)}
            autoComplete="organization"
            required
            autoCapitalize="none"
            spellCheck={false}
          />
        </div>
        <div className="field">
          <label htmlFor="login-email">Email</label>
          <input
            id="login-email"
            type="email"
            value={email}
            onChange={(e) => setEmail(e.target.value)}
            autoComplete="username"
            required
          />
        </div>
        <div className="field">
          <label htmlFor="login-password">Password</label>
          <input
            id="login-password"
            type="password"
            value={password}
            onChange={(e) => setPassword(e.target.value)}
            autoComplete="current-password"
            required
          />
        </div>
        <FormError error={error} />
        <button type="submit" className="btn btn-primary btn-block" disabled={busy}>
          {busy ? 'Logging in…' : 'Log in'}
        </button>
        <p className="auth-switch">
          New here? <Link to="/signup">Create a tenant</Link>
        </p>
      </form>
    </div>
  );
}
