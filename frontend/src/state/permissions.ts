import type { Role, Scope } from '../api/client';

/** What the dashboard offers a role (docs/authorization.md). The server enforces the same. */
export interface Permissions {
  chat: boolean;
  writeSessions: boolean;
  writeAgents: boolean;
  manageMembers: boolean;
  manageProviders: boolean;
  /** Scopes this role may put on an API key. */
  mintableScopes: Scope[];
}

const ALL_SCOPES: Scope[] = ['chat', 'agents:read', 'agents:write', 'sessions:read', 'sessions:write', 'usage:read', 'admin'];

export function permissionsFor(role: Role | undefined): Permissions {
  switch (role) {
    case 'admin':
      return {
        chat: true,
        writeSessions: true,
        writeAgents: true,
        manageMembers: true,
        manageProviders: true,
        mintableScopes: ALL_SCOPES,
      };
    case 'user':
      return {
        chat: true,
        writeSessions: true,
        writeAgents: false,
        manageMembers: false,
        manageProviders: false,
        mintableScopes: ['chat', 'agents:read', 'sessions:read', 'sessions:write', 'usage:read'],
      };
    default:
      // Viewers, and anyone whose role is not known yet, get the read-only view.
      return {
        chat: false,
        writeSessions: false,
        writeAgents: false,
        manageMembers: false,
        manageProviders: false,
        mintableScopes: role === 'viewer' ? ['agents:read', 'sessions:read', 'usage:read'] : [],
      };
  }
}

export const SCOPE_DESCRIPTIONS: Record<Scope, string> = {
  chat: 'Chat with agents, follow and cancel runs, OpenAI-compatible API',
  'agents:read': 'List and read agents',
  'agents:write': 'Create, change and delete agents',
  'sessions:read': 'Read and export chat sessions, follow runs',
  'sessions:write': 'Create, rename and delete chat sessions',
  'usage:read': 'Read usage',
  admin: 'Everything, including keys, members and providers',
};
