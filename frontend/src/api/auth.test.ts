import { beforeEach, describe, expect, it } from 'vitest';
import { api, unwrap } from './client';
import { authFetch, refreshAccessToken, SESSION_ENDED_MESSAGE, validAccessToken } from './auth';
import { useAuth } from '../state/auth';
import { apiError, json, meResponse, mockFetch, signIn } from '../test/utils';

const pair = (n: number) => ({
  access_token: `access-${n}`,
  refresh_token: `refresh-${n}`,
  token_type: 'Bearer',
  expires_in: 900,
  refresh_expires_in: 2592000,
});

/** /me answers 401 token_expired to any token but the current one. */
function meRoute(valid: () => string) {
  return (call: { headers: Headers }) =>
    call.headers.get('Authorization') === `Bearer ${valid()}`
      ? json(meResponse('admin'))
      : apiError(401, 'token_expired', 'the access token has expired');
}

describe('token refresh', () => {
  beforeEach(() => {
    useAuth.setState({ tokens: null, endedReason: null, lastTenant: null });
  });

  it('sends the access token', async () => {
    signIn();
    const { calls } = mockFetch({ 'GET /api/v1/me': meRoute(() => 'access-1') });
    const me = await unwrap(api.GET('/api/v1/me'));
    expect(me.role).toBe('admin');
    expect(calls[0]?.headers.get('Authorization')).toBe('Bearer access-1');
  });

  it('refreshes on 401, stores the rotated pair and retries the request', async () => {
    signIn({ accessToken: 'access-1' });
    let current = 'access-0'; // the server no longer takes access-1 (it expired)
    const { calls } = mockFetch({
      'GET /api/v1/me': meRoute(() => current),
      'POST /api/v1/auth/refresh': (call) => {
        expect(JSON.parse(call.body ?? '{}')).toEqual({ refresh_token: 'refresh-1' });
        current = 'access-2';
        return json(pair(2));
      },
    });
    const me = await unwrap(api.GET('/api/v1/me'));
    expect(me.user.email).toBe('ada@acme.example');
    expect(calls.map((c) => `${c.method} ${c.path}`)).toEqual([
      'GET /api/v1/me',
      'POST /api/v1/auth/refresh',
      'GET /api/v1/me',
    ]);
    expect(calls[2]?.headers.get('Authorization')).toBe('Bearer access-2');
    const tokens = useAuth.getState().tokens!;
    expect(tokens.accessToken).toBe('access-2');
    expect(tokens.refreshToken).toBe('refresh-2');
    expect(tokens.accessExpiresAt).toBeGreaterThan(Date.now() + 800_000);
    // Persisted for the next page load.
    expect(localStorage.getItem('paas.auth')).toContain('refresh-2');
  });

  it('retries a request with a body (the body is not lost)', async () => {
    signIn({ accessToken: 'stale' });
    let current = 'fresh-never';
    const bodies: (string | null)[] = [];
    mockFetch({
      'PATCH /api/v1/me': (call) => {
        bodies.push(call.body);
        return call.headers.get('Authorization') === `Bearer ${current}`
          ? json(meResponse('admin').user)
          : apiError(401, 'token_expired', 'expired');
      },
      'POST /api/v1/auth/refresh': () => {
        current = 'access-2';
        return json(pair(2));
      },
    });
    await unwrap(api.PATCH('/api/v1/me', { body: { display_name: 'Ada L.' } }));
    expect(bodies).toEqual(['{"display_name":"Ada L."}', '{"display_name":"Ada L."}']);
  });

  it('refreshes once for many requests refused at the same time', async () => {
    signIn({ accessToken: 'stale' });
    let current = 'nothing-yet';
    let refreshes = 0;
    mockFetch({
      'GET /api/v1/me': meRoute(() => current),
      'POST /api/v1/auth/refresh': async () => {
        refreshes += 1;
        await new Promise((resolve) => setTimeout(resolve, 20));
        current = 'access-2';
        return json(pair(2));
      },
    });
    const results = await Promise.all([1, 2, 3, 4].map(() => unwrap(api.GET('/api/v1/me'))));
    expect(results).toHaveLength(4);
    // A second refresh would present a spent refresh token, which revokes the session.
    expect(refreshes).toBe(1);
  });

  it('refreshes ahead of time when the access token is about to expire', async () => {
    signIn({ accessExpiresAt: Date.now() + 5_000 });
    const { calls } = mockFetch({ 'POST /api/v1/auth/refresh': () => json(pair(3)) });
    await expect(validAccessToken()).resolves.toBe('access-3');
    expect(calls).toHaveLength(1);
  });

  it('ends the session with a message when the refresh is refused', async () => {
    signIn({ accessToken: 'stale' });
    mockFetch({
      'GET /api/v1/me': () => apiError(401, 'token_expired', 'expired'),
      'POST /api/v1/auth/refresh': () =>
        apiError(401, 'refresh_token_reused', 'this refresh token was already used; the session has been revoked'),
    });
    const response = await authFetch('/api/v1/me');
    expect(response.status).toBe(401);
    expect(useAuth.getState().tokens).toBeNull();
    expect(useAuth.getState().endedReason).toBe(SESSION_ENDED_MESSAGE);
  });

  it('does not refresh when another request already rotated the tokens', async () => {
    signIn({ accessToken: 'access-9' });
    const { calls } = mockFetch({ 'POST /api/v1/auth/refresh': () => json(pair(4)) });
    // The caller was refused with an older token; the stored one is newer and valid.
    await expect(refreshAccessToken('access-8')).resolves.toBe('access-9');
    expect(calls).toHaveLength(0);
  });

  it('keeps the session when the network fails during a refresh', async () => {
    signIn({ accessToken: 'stale' });
    mockFetch({
      'POST /api/v1/auth/refresh': () => {
        throw new TypeError('Failed to fetch');
      },
    });
    await expect(refreshAccessToken('stale')).rejects.toThrow('Failed to fetch');
    expect(useAuth.getState().tokens?.refreshToken).toBe('refresh-1');
  });
});
