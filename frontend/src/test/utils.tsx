import type { ReactElement } from 'react';
import { render } from '@testing-library/react';
import { MemoryRouter } from 'react-router';
import { QueryClient, QueryClientProvider } from '@tanstack/react-query';
import { vi } from 'vitest';
import { App } from '../App';
import { useAuth, type Tokens } from '../state/auth';
import type { Role } from '../api/client';

export interface Call {
  method: string;
  path: string;
  url: string;
  headers: Headers;
  body: string | null;
}

type Handler = (call: Call) => Response | Promise<Response>;

/** Replaces `fetch` with a router over "METHOD /path" (a `:name` segment matches anything). */
export function mockFetch(routes: Record<string, Handler>) {
  const calls: Call[] = [];
  const compiled = Object.entries(routes).map(([key, handler]) => {
    const [method, pattern] = key.split(' ') as [string, string];
    const regex = new RegExp(`^${pattern.replace(/:[a-z_]+/gi, '[^/]+')}$`);
    return { method, regex, handler };
  });
  const fn = vi.fn(async (input: RequestInfo | URL, init?: RequestInit) => {
    let url: URL;
    let method: string;
    let headers: Headers;
    let body: string | null;
    if (input instanceof Request) {
      url = new URL(input.url);
      method = input.method;
      headers = new Headers(input.headers);
      body = input.body ? await input.clone().text() : null;
    } else {
      url = new URL(String(input), 'http://localhost:3000');
      method = (init?.method ?? 'GET').toUpperCase();
      headers = new Headers(init?.headers);
      body = typeof init?.body === 'string' ? init.body : null;
    }
    const call = { method, path: url.pathname, url: url.toString(), headers, body };
    calls.push(call);
    const route = compiled.find((r) => r.method === method && r.regex.test(url.pathname));
    if (!route) return json({ error: { code: 'route_not_found', message: `no mock for ${method} ${url.pathname}` } }, 404);
    return route.handler(call);
  });
  vi.stubGlobal('fetch', fn);
  return { fn, calls };
}

export function json(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { 'Content-Type': 'application/json', ...headers },
  });
}

export function apiError(status: number, code: string, message: string, headers: Record<string, string> = {}) {
  return json({ error: { code, message } }, status, headers);
}

export interface SseEvent {
  id: number;
  event: string;
  data: unknown;
}

/** Formats events as the server does: `id:`, `event:`, `data: {"event", "data"}`. */
export function sseText(events: SseEvent[]): string {
  return events
    .map((e) => `id: ${e.id}\nevent: ${e.event}\ndata: ${JSON.stringify({ event: e.event, data: e.data })}\n\n`)
    .join('');
}

/** A text/event-stream response that sends each chunk separately. */
export function sseResponse(chunks: string[], headers: Record<string, string> = {}): Response {
  const encoder = new TextEncoder();
  const stream = new ReadableStream<Uint8Array>({
    async start(controller) {
      for (const chunk of chunks) {
        controller.enqueue(encoder.encode(chunk));
        await new Promise((resolve) => setTimeout(resolve, 0));
      }
      controller.close();
    },
  });
  return new Response(stream, { status: 200, headers: { 'Content-Type': 'text/event-stream', ...headers } });
}

export function signIn(tokens: Partial<Tokens> = {}) {
  useAuth.setState({
    tokens: {
      accessToken: 'access-1',
      refreshToken: 'refresh-1',
      accessExpiresAt: Date.now() + 15 * 60_000,
      refreshExpiresAt: Date.now() + 30 * 86_400_000,
      ...tokens,
    },
    endedReason: null,
  });
}

export const TENANT = {
  id: 't-1',
  name: 'acme',
  display_name: 'Acme',
  plan: 'free',
  status: 'active',
  settings: {},
  created_at: '2026-11-25T17:45:41Z',
  updated_at: '2026-11-25T17:45:41Z',
};

export function meResponse(role: Role) {
  return {
    user: {
      id: 'u-1',
      tenant_id: 't-1',
      email: 'ada@acme.example',
      display_name: 'Ada',
      role,
      status: 'active',
      last_login_at: null,
      created_at: '2026-11-25T17:45:41Z',
      updated_at: '2026-11-25T17:45:41Z',
    },
    role,
    tenant: TENANT,
    auth: { method: 'session', api_key_id: null, scopes: null },
  };
}

export const AGENT = {
  id: 'a-1',
  tenant_id: 't-1',
  name: 'calc',
  display_name: 'Calculator bot',
  description: 'Does sums.',
  system_prompt: '',
  provider_id: 'mock',
  model: 'mock',
  temperature: null,
  max_tokens: 1024,
  tools: ['calculator'],
  max_steps: 8,
  timeout_seconds: 120,
  created_at: '2026-11-25T17:45:41Z',
  updated_at: '2026-11-25T17:45:41Z',
};

export function renderApp(path: string, ui: ReactElement = <App />) {
  const queryClient = new QueryClient({
    defaultOptions: { queries: { retry: false, gcTime: Infinity }, mutations: { retry: false } },
  });
  return {
    queryClient,
    ...render(
      <QueryClientProvider client={queryClient}>
        <MemoryRouter initialEntries={[path]}>{ui}</MemoryRouter>
      </QueryClientProvider>,
    ),
  };
}
