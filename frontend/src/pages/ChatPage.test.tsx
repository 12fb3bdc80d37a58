import { describe, expect, it } from 'vitest';
import { screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { AGENT, apiError, json, meResponse, mockFetch, renderApp, signIn, sseResponse, sseText } from '../test/utils';
import { ACTIVE_RUN_KEY } from '../chat/useChatRun';
import { newRun } from '../chat/runState';

const usage = { prompt_tokens: 100, completion_tokens: 20, total_tokens: 120, estimated: false };
const session = {
  id: 'ses-1',
  tenant_id: 't-1',
  user_id: 'u-1',
  agent_id: AGENT.id,
  title: 'what is 6 * 7?',
  created_at: '2026-11-25T18:00:00Z',
  updated_at: '2026-11-25T18:00:01Z',
};

function storedMessages(runId: string) {
  const base = { session_id: 'ses-1', run_id: runId, is_error: false, prompt_tokens: 0, completion_tokens: 0, created_at: '2026-11-25T18:00:00Z' };
  return [
    { ...base, id: 'm1', role: 'user', content: 'what is 6 * 7?', reasoning: '', tool_calls: [] },
    {
      ...base,
      id: 'm2',
      role: 'assistant',
      content: '',
      reasoning: 'Needs arithmetic.',
      tool_calls: [{ id: 'call_1', name: 'calculator', arguments: '{"expression":"6 * 7"}' }],
    },
    { ...base, id: 'm3', role: 'tool', content: '42', reasoning: '', tool_calls: [], tool_call_id: 'call_1', tool_name: 'calculator' },
    { ...base, id: 'm4', role: 'assistant', content: 'The calculator tool returned: **42**', reasoning: '', tool_calls: [] },
  ];
}

function chatStream() {
  return sseResponse(
    [
      sseText([
        { id: 1, event: 'thought', data: 'Needs ' },
        { id: 2, event: 'thought', data: 'arithmetic.' },
        { id: 3, event: 'usage', data: usage },
        { id: 4, event: 'tool_call', data: { id: 'call_1', name: 'calculator', arguments: '{"expression":"6 * 7"}' } },
      ]),
      sseText([
        { id: 5, event: 'tool_result', data: { id: 'call_1', name: 'calculator', content: '42', is_error: false } },
        { id: 6, event: 'message', data: 'The calculator tool returned: ' },
        { id: 7, event: 'message', data: '**42**' },
      ]),
      sseText([
        {
          id: 8,
          event: 'done',
          data: { status: 'completed', usage, steps: 2, run_id: 'run-1', session_id: 'ses-1', stored: true },
        },
      ]),
    ],
    { 'X-Run-Id': 'run-1', 'X-Session-Id': 'ses-1' },
  );
}

describe('ChatPage', () => {
  it('streams an answer with a tool step, then shows the stored conversation', async () => {
    signIn();
    let finished = false;
    const { calls } = mockFetch({
      'GET /api/v1/me': () => json(meResponse('user')),
      'GET /api/v1/agents': () => json({ items: [AGENT] }),
      'GET /api/v1/sessions/ses-1': () => json(session),
      'GET /api/v1/sessions/ses-1/messages': () =>
        json({ items: finished ? storedMessages('run-1') : storedMessages('run-1').slice(0, 1), limit: 200, offset: 0 }),
      'POST /api/v1/chat/completions': () => {
        setTimeout(() => (finished = true), 0);
        return chatStream();
      },
    });
    const user = userEvent.setup();
    renderApp('/chat');

    const box = await screen.findByLabelText('Message');
    await screen.findByRole('option', { name: /Calculator bot/ });
    await user.type(box, 'what is 6 * 7?');
    await user.click(screen.getByRole('button', { name: 'Send' }));

    // The streamed answer, rendered as Markdown, with a collapsible tool step.
    const answer = await screen.findByText('42', { selector: 'strong' });
    const turn = answer.closest('.turn-assistant') as HTMLElement;
    expect(within(turn).getByText(/Tool call:/)).toBeInTheDocument();
    expect(within(turn).getByText('calculator', { selector: 'summary code' })).toBeInTheDocument();
    expect(within(turn).getAllByText(/Thought/).length).toBeGreaterThan(0);
    expect(turn.querySelector('details')).not.toBeNull();

    const post = calls.find((c) => c.method === 'POST');
    expect(JSON.parse(post?.body ?? '{}')).toEqual({ agent: AGENT.id, message: 'what is 6 * 7?' });

    // After `done`, the stored messages replace the live copy and the run is forgotten.
    await waitFor(() => expect(screen.queryByTestId('live-run')).not.toBeInTheDocument());
    expect(screen.getByRole('button', { name: 'Copy answer' })).toBeInTheDocument();
    await waitFor(() => expect(screen.getAllByText('what is 6 * 7?', { selector: '.bubble-user' })).toHaveLength(1));
    expect(screen.getByText('Result')).toBeInTheDocument();
    expect(sessionStorage.getItem(ACTIVE_RUN_KEY)).toBeNull();
    expect(screen.queryByRole('button', { name: 'Stop' })).not.toBeInTheDocument();
  });

  it('shows a quota refusal inline with the server’s message and Retry-After', async () => {
    signIn();
    mockFetch({
      'GET /api/v1/me': () => json(meResponse('admin')),
      'GET /api/v1/agents': () => json({ items: [AGENT] }),
      'POST /api/v1/chat/completions': () =>
        apiError(
          429,
          'token_quota_exceeded',
          "this tenant's monthly token quota (max_tokens_per_month = 1000) has no room for this request",
          { 'Retry-After': '30' },
        ),
    });
    const user = userEvent.setup();
    renderApp('/chat');
    await screen.findByRole('option', { name: /Calculator bot/ });
    await user.type(await screen.findByLabelText('Message'), 'hello');
    await user.click(screen.getByRole('button', { name: 'Send' }));

    const alert = await screen.findByRole('alert');
    expect(within(alert).getByText('Monthly token quota reached')).toBeInTheDocument();
    expect(within(alert).getByText(/max_tokens_per_month = 1000/)).toBeInTheDocument();
    expect(within(alert).getByText(/Retry after 30 s/)).toBeInTheDocument();
    expect(within(alert).getByText('token_quota_exceeded')).toBeInTheDocument();
    // Waiting is what to do: the retry button waits for Retry-After.
    expect(within(alert).getByRole('button', { name: 'Retry' })).toBeDisabled();
  });

  it('shows a provider error event inside the answer, also once the run is stored', async () => {
    signIn();
    let stored = false;
    const userMessage = {
      id: 'm1', session_id: 'ses-1', run_id: 'run-2', role: 'user', content: 'hello', reasoning: '', tool_calls: [],
      is_error: false, prompt_tokens: 0, completion_tokens: 0, created_at: '2026-11-25T18:00:00Z',
    };
    const { calls } = mockFetch({
      'GET /api/v1/me': () => json(meResponse('admin')),
      'GET /api/v1/agents': () => json({ items: [AGENT] }),
      'GET /api/v1/sessions/:id': () => json(session),
      'GET /api/v1/sessions/:id/messages': () => json({ items: stored ? [userMessage] : [], limit: 200, offset: 0 }),
      'POST /api/v1/chat/completions': () => {
        setTimeout(() => (stored = true), 0);
        return sseResponse(
          [
            sseText([
              { id: 1, event: 'error', data: { code: 'upstream_unavailable', message: 'the model provider is unavailable; retry shortly' } },
              { id: 2, event: 'done', data: { status: 'failed', usage, steps: 1, run_id: 'run-2', session_id: 'ses-1', stored: true } },
            ]),
          ],
          { 'X-Run-Id': 'run-2', 'X-Session-Id': 'ses-1' },
        );
      },
    });
    const user = userEvent.setup();
    renderApp('/chat');
    await screen.findByRole('option', { name: /Calculator bot/ });
    await user.type(await screen.findByLabelText('Message'), 'hello');
    await user.click(screen.getByRole('button', { name: 'Send' }));
    const alert = await screen.findByRole('alert');
    expect(alert).toHaveTextContent('The model provider failed.');
    expect(alert).toHaveTextContent('the model provider is unavailable; retry shortly');
    expect(await screen.findByText('Failed')).toBeInTheDocument();
    // The stored messages (reloaded after `done`) hold no error: it stays shown after the run.
    await waitFor(() => expect(screen.queryByTestId('live-run')).not.toBeInTheDocument());
    expect(calls.filter((c) => c.path === '/api/v1/sessions/ses-1/messages').length).toBeGreaterThan(0);
    expect(screen.getByRole('alert')).toHaveTextContent('the model provider is unavailable');
    expect(screen.getByText('Failed')).toBeInTheDocument();
    expect(screen.getAllByText('hello', { selector: '.bubble-user' })).toHaveLength(1);
  });

  it('resumes a run after a reload from the saved run id and last event id', async () => {
    signIn();
    const saved = {
      ...newRun('[mock:chunks=4] go'),
      runId: 'run-9',
      sessionId: 'ses-1',
      lastEventId: 3,
      status: 'streaming' as const,
      parts: [{ kind: 'text' as const, text: 'word1 word2 ' }],
    };
    sessionStorage.setItem(ACTIVE_RUN_KEY, JSON.stringify(saved));
    const { calls } = mockFetch({
      'GET /api/v1/me': () => json(meResponse('user')),
      'GET /api/v1/agents': () => json({ items: [AGENT] }),
      'GET /api/v1/sessions/ses-1': () => json(session),
      'GET /api/v1/sessions/ses-1/messages': () => json({ items: [], limit: 200, offset: 0 }),
      'GET /api/v1/runs/run-9/events': () =>
        sseResponse([
          sseText([
            { id: 4, event: 'message', data: 'word3 ' },
            { id: 5, event: 'message', data: 'word4' },
            { id: 6, event: 'done', data: { status: 'completed', usage, steps: 1, run_id: 'run-9', session_id: 'ses-1', stored: false } },
          ]),
        ]),
    });
    renderApp('/chat/ses-1');
    expect(await screen.findByText('word1 word2 word3 word4')).toBeInTheDocument();
    const follow = calls.find((c) => c.path === '/api/v1/runs/run-9/events');
    expect(follow?.headers.get('Last-Event-ID')).toBe('3');
    expect(calls.some((c) => c.method === 'POST')).toBe(false);
    await waitFor(() => expect(sessionStorage.getItem(ACTIVE_RUN_KEY)).toBeNull());
  });
});
