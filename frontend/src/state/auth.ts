import { create } from 'zustand';
import { createJSONStorage, persist } from 'zustand/middleware';

/** The token pair of a login session, with when each expires (epoch ms). */
export interface Tokens {
  accessToken: string;
  refreshToken: string;
  accessExpiresAt: number;
  refreshExpiresAt: number;
}

/** What login, signup and refresh answer (the token part). */
export interface TokenResponse {
  access_token: string;
  refresh_token: string;
  expires_in: number;
  refresh_expires_in: number;
}

export const AUTH_STORAGE_KEY = 'paas.auth';

interface AuthState {
  tokens: Tokens | null;
  /** The tenant last logged in to, to prefill the login form. */
  lastTenant: string | null;
  /** Why the user was sent back to the login page (shown there once). */
  endedReason: string | null;
  setTokens: (tokens: Tokens) => void;
  signedIn: (tokens: Tokens, tenant: string) => void;
  signOut: (reason?: string | null) => void;
  clearEndedReason: () => void;
}

export function tokensFrom(response: TokenResponse, now: number = Date.now()): Tokens {
  return {
    accessToken: response.access_token,
    refreshToken: response.refresh_token,
    accessExpiresAt: now + response.expires_in * 1000,
    refreshExpiresAt: now + response.refresh_expires_in * 1000,
  };
}

export const useAuth = create<AuthState>()(
  persist(
    (set) => ({
      tokens: null,
      lastTenant: null,
      endedReason: null,
      setTokens: (tokens) => set({ tokens }),
      signedIn: (tokens, tenant) => set({ tokens, lastTenant: tenant, endedReason: null }),
      signOut: (reason = null) => set({ tokens: null, endedReason: reason }),
      clearEndedReason: () => set({ endedReason: null }),
    }),
    {
      name: AUTH_STORAGE_KEY,
      storage: createJSONStorage(() => localStorage),
      partialize: (state) => ({ tokens: state.tokens, lastTenant: state.lastTenant }),
      version: 1,
    },
  ),
);

// Keep tabs in step: another tab that refreshed (or logged out) wrote localStorage.
if (typeof window !== 'undefined') {
  window.addEventListener('storage', (event) => {
    if (event.key === AUTH_STORAGE_KEY) {
      void useAuth.persist.rehydrate();
    }
  });
}
