import { AUTH_STORAGE_KEY, tokensFrom, useAuth, type TokenResponse } from '../state/auth';

/** Shown on the login page when a refresh fails. */
export const SESSION_ENDED_MESSAGE = 'Your session ended. Please log in again.';

const REFRESH_PATH = '/api/v1/auth/refresh';
/** Refresh this long before the access token expires. */
const EXPIRY_MARGIN_MS = 30_000;

let inflight: Promise<string | null> | null = null;

function origin(): string {
  return typeof window !== 'undefined' ? window.location.origin : 'http://localhost';
}

/** Ends the login session on this device and says why on the login page. */
export function endSession(reason: string = SESSION_ENDED_MESSAGE): void {
  inflight = null;
  useAuth.getState().signOut(reason);
}

/** Runs `task` while holding a lock shared by every tab (Web Locks), or directly without it. */
async function withRefreshLock<T>(task: () => Promise<T>): Promise<T> {
  const locks = typeof navigator !== 'undefined' ? navigator.locks : undefined;
  if (locks?.request) {
    return locks.request('paas-token-refresh', task) as Promise<T>;
  }
  return task();
}

/** Another tab may have refreshed while we waited: pick up what it stored. */
async function syncFromStorage(): Promise<void> {
  try {
    if (typeof localStorage !== 'undefined' && localStorage.getItem(AUTH_STORAGE_KEY)) {
      await useAuth.persist.rehydrate();
    }
  } catch {
    // Storage may be unavailable (private mode); the in-memory state still works.
  }
}

async function doRefresh(staleAccessToken: string | null): Promise<string | null> {
  return withRefreshLock(async () => {
    await syncFromStorage();
    const tokens = useAuth.getState().tokens;
    if (!tokens) return null;
    // Someone (another request or tab) already rotated the pair: use theirs. The refresh token
    // is single-use, so presenting a spent one would revoke the whole session.
    if (
      staleAccessToken !== null &&
      tokens.accessToken !== staleAccessToken &&
      tokens.accessExpiresAt - EXPIRY_MARGIN_MS > Date.now()
    ) {
      return tokens.accessToken;
    }
    let response: Response;
    try {
      response = await globalThis.fetch(new URL(REFRESH_PATH, origin()).toString(), {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ refresh_token: tokens.refreshToken }),
      });
    } catch (err) {
      // The network failed, not the session: keep the tokens and let the caller fail.
      throw err instanceof Error ? err : new Error(String(err));
    }
    if (!response.ok) {
      if (response.status === 401 || response.status === 403 || response.status === 400) {
        endSession();
        return null;
      }
      throw new Error(`Refreshing the session failed (${response.status})`);
    }
    const body = (await response.json()) as TokenResponse;
    const next = tokensFrom(body);
    useAuth.getState().setTokens(next);
    return next.accessToken;
  });
}

/**
 * Trades the refresh token for a new pair, once even when many requests ask at the same time.
 * Returns the new access token, or null when the session has ended (the user must log in).
 * `staleAccessToken` is the token that was refused: if the stored one is already newer, it is
 * returned without a refresh.
 */
export function refreshAccessToken(staleAccessToken: string | null = null): Promise<string | null> {
  if (!inflight) {
    inflight = doRefresh(staleAccessToken).finally(() => {
      inflight = null;
    });
  }
  return inflight;
}

/** The current access token, refreshed first when it is about to expire. */
export async function validAccessToken(): Promise<string | null> {
  const tokens = useAuth.getState().tokens;
  if (!tokens) return null;
  if (tokens.accessExpiresAt - EXPIRY_MARGIN_MS > Date.now()) return tokens.accessToken;
  if (tokens.refreshExpiresAt <= Date.now()) {
    endSession();
    return null;
  }
  return refreshAccessToken(tokens.accessToken);
}

function withAuthorization(headersInit: HeadersInit | undefined, token: string | null): Headers {
  const headers = new Headers(headersInit);
  if (token) headers.set('Authorization', `Bearer ${token}`);
  return headers;
}

function send(input: RequestInfo | URL, init: RequestInit | undefined, token: string | null): Promise<Response> {
  if (input instanceof Request) {
    if (token) input.headers.set('Authorization', `Bearer ${token}`);
    return globalThis.fetch(input, init);
  }
  return globalThis.fetch(input, { ...init, headers: withAuthorization(init?.headers, token) });
}

/**
 * `fetch` with the caller's access token. A 401 triggers one silent refresh and one retry; if
 * the refresh fails, the session ends (the app then shows the login page with a message).
 */
export async function authFetch(input: RequestInfo | URL, init?: RequestInit): Promise<Response> {
  const token = await validAccessToken();
  // A Request's body can be read once: keep a copy for the retry.
  const spare = input instanceof Request ? input.clone() : null;
  const response = await send(input, init, token);
  if (response.status !== 401 || !token) return response;

  const fresh = await refreshAccessToken(token);
  if (!fresh) return response;
  const retried = await send(spare ?? input, init, fresh);
  if (retried.status === 401) endSession();
  return retried;
}
