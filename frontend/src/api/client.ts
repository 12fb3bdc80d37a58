/**
 * The one typed client for the Agent PaaS API. Every call goes through `api` (authenticated) or
 * `publicApi` (signup, login, refresh, logout), both typed by `paths` from `schema.d.ts`, which
 * is generated from the server's OpenAPI document (`npm run gen:api`).
 */
import createClient from 'openapi-fetch';
import type { components, paths } from './schema';
import { authFetch } from './auth';
import { ApiError, apiErrorFrom } from './errors';

export type Schemas = components['schemas'];
export type Agent = Schemas['Agent'];
export type ApiKey = Schemas['ApiKey'];
export type ChatSession = Schemas['ChatSession'];
export type Message = Schemas['Message'];
export type Provider = Schemas['Provider'];
export type User = Schemas['User'];
export type Role = Schemas['Role'];
export type Scope = Schemas['Scope'];
export type MeResponse = Schemas['MeResponse'];
export type QuotaStatus = Schemas['QuotaStatus'];
export type UsageReport = Schemas['UsageReport'];
export type UsageRow = Schemas['UsageRow'];
export type ChatRequest = Schemas['ChatRequest'];
export type TokenUsage = Schemas['RunUsage'];

/** Paths of the API, checked against the generated `paths`. */
export type ApiPath = keyof paths;

/** Builds a URL for a path of the API, substituting `{param}`s (for the SSE and download calls). */
export function apiUrl<P extends ApiPath>(
  path: P,
  params: Record<string, string> = {},
  query: Record<string, string | number | undefined> = {},
): string {
  const filled = path.replace(/\{(\w+)\}/g, (_, name: string) => {
    const value = params[name];
    if (value === undefined) throw new Error(`missing path parameter ${name}`);
    return encodeURIComponent(value);
  });
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined && value !== '') search.set(key, String(value));
  }
  const qs = search.toString();
  return qs ? `${filled}?${qs}` : filled;
}

const baseUrl = typeof window !== 'undefined' ? window.location.origin : 'http://localhost';

/** Authenticated calls: adds the access token and refreshes it silently. */
export const api = createClient<paths>({ baseUrl, fetch: (request) => authFetch(request) });

/** Calls that need no access token. */
export const publicApi = createClient<paths>({ baseUrl, fetch: (request) => globalThis.fetch(request) });

interface FetchResult<T> {
  data?: T;
  error?: unknown;
  response: Response;
}

/** Returns the data of a successful call, or throws an ApiError with the server's code. */
export async function unwrap<T>(call: Promise<FetchResult<T>>): Promise<T> {
  const { data, error, response } = await call;
  if (!response.ok || error !== undefined) throw apiErrorFrom(response, error);
  return data as T;
}

/** For calls answering 204: throws on failure, returns nothing. */
export async function expectOk(call: Promise<FetchResult<unknown>>): Promise<void> {
  const { error, response } = await call;
  if (!response.ok || error !== undefined) throw apiErrorFrom(response, error);
}

export { ApiError };
