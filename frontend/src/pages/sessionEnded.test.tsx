import { describe, expect, it } from 'vitest';
import { screen } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { useAuth } from '../state/auth';
import { AGENT, apiError, json, meResponse, mockFetch, renderApp, signIn } from '../test/utils';

describe('session lifecycle', () => {
  it('sends the user to the login page with a clear message when the refresh fails', async () => {
    signIn({ accessToken: 'expired' });
    mockFetch({
      'GET /api/v1/me': () => apiError(401, 'token_expired', 'the access token has expired'),
      'GET /api/v1/agents': () => apiError(401, 'token_expired', 'the access token has expired'),
      'POST /api/v1/auth/refresh': () => apiError(401, 'session_revoked', 'this session has ended'),
    });
    renderApp('/agents');
    expect(await screen.findByRole('heading', { name: 'Log in' })).toBeInTheDocument();
    expect(screen.getByText('Your session ended. Please log in again.')).toBeInTheDocument();
    expect(useAuth.getState().tokens).toBeNull();
  });

  it('logs in with tenant, email and password and stores the tokens', async () => {
    const { calls } = mockFetch({
      'POST /api/v1/auth/login': () =>
        json({
          user: meResponse('user').user,
          access_token: 'a-1',
          refresh_token: 'r-1',
          token_type: 'Bearer',
          expires_in: 900,
          refresh_expires_in: 2592000,
        }),
      'GET /api/v1/me': () => json(meResponse('user')),
      'GET /api/v1/agents': () => json({ items: [AGENT] }),
    });
    const user = userEvent.setup();
    renderApp('/login');
    await user.type(screen.getByLabelText('Tenant'), 'acme');
    await user.type(screen.getByLabelText('Email'), 'ada@acme.example');
    await user.type(screen.getByLabelText('Password'), 'correct horse battery');
    await user.click(screen.getByRole('button', { name: 'Log in' }));
    expect(await screen.findByLabelText('Message')).toBeInTheDocument();
    expect(JSON.parse(calls[0]?.body ?? '{}')).toEqual({
      tenant: 'acme',
      email: 'ada@acme.example',
      password: 'correct horse battery',
    });
    expect(useAuth.getState().tokens?.refreshToken).toBe('r-1');
    expect(JSON.parse(localStorage.getItem('paas.auth') ?? '{}').state.tokens.accessToken).toBe('a-1');
  });

  it('shows a login error from the server', async () => {
    mockFetch({
      'POST /api/v1/auth/login': () =>
        apiError(429, 'too_many_login_attempts', 'too many failed logins; wait before trying again', { 'Retry-After': '899' }),
    });
    const user = userEvent.setup();
    renderApp('/login');
    await user.type(screen.getByLabelText('Tenant'), 'acme');
    await user.type(screen.getByLabelText('Email'), 'ada@acme.example');
    await user.type(screen.getByLabelText('Password'), 'wrong password!');
    await user.click(screen.getByRole('button', { name: 'Log in' }));
    expect(await screen.findByRole('alert')).toHaveTextContent(
      'too many failed logins; wait before trying again Retry after 899 s.',
    );
  });
});
