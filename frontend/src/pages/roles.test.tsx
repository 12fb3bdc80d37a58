import { describe, expect, it } from 'vitest';
import { screen } from '@testing-library/react';
import type { Role } from '../api/client';
import { AGENT, json, meResponse, mockFetch, renderApp, signIn } from '../test/utils';

function serve(role: Role) {
  signIn();
  mockFetch({
    'GET /api/v1/me': () => json(meResponse(role)),
    'GET /api/v1/agents': () => json({ items: [AGENT] }),
    'GET /api/v1/agents/:id': () => json(AGENT),
    'GET /api/v1/providers': () => json({ items: [], platform: [] }),
    'GET /api/v1/sessions': () => json({ items: [], limit: 30, offset: 0 }),
    'GET /api/v1/api-keys': () => json({ items: [] }),
  });
}

describe('role-aware controls', () => {
  it('offers an admin agent management', async () => {
    serve('admin');
    renderApp('/agents');
    expect(await screen.findByRole('link', { name: 'New agent' })).toBeInTheDocument();
    expect(await screen.findByRole('link', { name: 'Edit calc' })).toBeInTheDocument();
    expect(screen.getByRole('link', { name: 'Try calc' })).toBeInTheDocument();
  });

  it('hides agent management from a user but lets them chat', async () => {
    serve('user');
    renderApp('/agents');
    expect(await screen.findByRole('link', { name: 'View calc' })).toBeInTheDocument();
    expect(screen.queryByRole('link', { name: 'New agent' })).not.toBeInTheDocument();
    expect(screen.getByRole('link', { name: 'Try calc' })).toBeInTheDocument();
  });

  it('gives a viewer a read-only agent page without create, edit, delete or chat', async () => {
    serve('viewer');
    renderApp('/agents/a-1');
    expect(await screen.findByRole('heading', { name: 'Calculator bot' })).toBeInTheDocument();
    expect(await screen.findByText('calculator')).toBeInTheDocument();
    expect(screen.queryByRole('heading', { name: 'Try it' })).not.toBeInTheDocument();
    expect(screen.queryByRole('button', { name: 'Save changes' })).not.toBeInTheDocument();
    expect(screen.queryByRole('button', { name: 'Delete agent' })).not.toBeInTheDocument();
    expect(screen.queryByLabelText('Message')).not.toBeInTheDocument();
    expect(screen.queryByLabelText('System prompt')).not.toBeInTheDocument();
  });

  it('does not show a viewer the new-agent form even by its address', async () => {
    serve('viewer');
    renderApp('/agents/new');
    expect(await screen.findByText('Only admins can create agents.')).toBeInTheDocument();
    expect(screen.queryByRole('button', { name: 'Create agent' })).not.toBeInTheDocument();
  });

  it('does not offer a viewer the chat box', async () => {
    serve('viewer');
    renderApp('/chat');
    expect(await screen.findByText('Viewers can read their conversations but cannot chat.')).toBeInTheDocument();
    expect(screen.queryByLabelText('Message')).not.toBeInTheDocument();
    expect(screen.queryByRole('button', { name: 'Send' })).not.toBeInTheDocument();
  });

  it('shows members and providers tabs to admins only', async () => {
    serve('admin');
    const admin = renderApp('/settings/keys');
    expect(await screen.findByRole('link', { name: 'Members' })).toBeInTheDocument();
    expect(screen.getByRole('link', { name: 'Providers' })).toBeInTheDocument();
    admin.unmount();

    serve('user');
    renderApp('/settings/keys');
    expect(await screen.findByRole('heading', { name: 'Your keys' })).toBeInTheDocument();
    expect(screen.queryByRole('link', { name: 'Members' })).not.toBeInTheDocument();
    expect(screen.queryByRole('link', { name: 'Providers' })).not.toBeInTheDocument();
    // A user may not mint admin or agents:write keys.
    expect(await screen.findByRole('checkbox', { name: /^chat/ })).toBeInTheDocument();
    expect(screen.queryByRole('checkbox', { name: /^admin/ })).not.toBeInTheDocument();
    expect(screen.queryByRole('checkbox', { name: /^agents:write/ })).not.toBeInTheDocument();
  });

  it('hides rename and delete of sessions from a viewer', async () => {
    signIn();
    mockFetch({
      'GET /api/v1/me': () => json(meResponse('viewer')),
      'GET /api/v1/agents': () => json({ items: [AGENT] }),
      'GET /api/v1/sessions': () =>
        json({
          items: [
            { id: 's-1', tenant_id: 't-1', user_id: 'u-1', agent_id: 'a-1', title: 'Old chat', created_at: '2026-11-25T18:00:00Z', updated_at: '2026-11-25T18:00:00Z' },
          ],
          limit: 30,
          offset: 0,
        }),
    });
    renderApp('/sessions');
    expect(await screen.findByRole('link', { name: 'Old chat' })).toBeInTheDocument();
    expect(screen.getByRole('button', { name: 'Export Old chat as Markdown' })).toBeInTheDocument();
    expect(screen.queryByRole('button', { name: 'Rename Old chat' })).not.toBeInTheDocument();
    expect(screen.queryByRole('button', { name: 'Delete Old chat' })).not.toBeInTheDocument();
  });
});
