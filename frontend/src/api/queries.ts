/** TanStack Query hooks over the typed client. */
import { useQuery } from '@tanstack/react-query';
import { api, unwrap, type Message } from './client';
import { useAuth } from '../state/auth';

export const keys = {
  me: ['me'] as const,
  agents: ['agents'] as const,
  agent: (id: string) => ['agents', id] as const,
  sessions: (q: string) => ['sessions', 'list', q] as const,
  sessionsAll: ['sessions'] as const,
  session: (id: string) => ['sessions', 'one', id] as const,
  messages: (id: string) => ['sessions', 'messages', id] as const,
  apiKeys: ['api-keys'] as const,
  providers: ['providers'] as const,
  users: ['users'] as const,
  quota: ['quota'] as const,
  usage: (from: string, to: string, groupBy: string) => ['usage', from, to, groupBy] as const,
};

export function useMe() {
  const signedIn = useAuth((state) => state.tokens !== null);
  return useQuery({
    queryKey: keys.me,
    queryFn: () => unwrap(api.GET('/api/v1/me')),
    enabled: signedIn,
    staleTime: 60_000,
  });
}

export function useAgents() {
  return useQuery({
    queryKey: keys.agents,
    queryFn: async () => (await unwrap(api.GET('/api/v1/agents'))).items,
  });
}

export function useAgent(id: string | undefined) {
  return useQuery({
    queryKey: keys.agent(id ?? ''),
    queryFn: () => unwrap(api.GET('/api/v1/agents/{id}', { params: { path: { id: id ?? '' } } })),
    enabled: Boolean(id),
  });
}

export function useSession(id: string | undefined) {
  return useQuery({
    queryKey: keys.session(id ?? ''),
    queryFn: () => unwrap(api.GET('/api/v1/sessions/{id}', { params: { path: { id: id ?? '' } } })),
    enabled: Boolean(id),
  });
}

/** Every stored message of a session, oldest first (pages of 200). */
export async function fetchAllMessages(sessionId: string): Promise<Message[]> {
  const limit = 200;
  const all: Message[] = [];
  for (let offset = 0; ; offset += limit) {
    const page = await unwrap(
      api.GET('/api/v1/sessions/{id}/messages', { params: { path: { id: sessionId }, query: { limit, offset } } }),
    );
    all.push(...page.items);
    if (page.items.length < limit) return all;
  }
}

export function useMessages(sessionId: string | null | undefined) {
  return useQuery({
    queryKey: keys.messages(sessionId ?? ''),
    queryFn: () => fetchAllMessages(sessionId ?? ''),
    enabled: Boolean(sessionId),
  });
}
