import { describe, expect, it } from 'vitest';
import { ApiError } from '../api/errors';
import { mockFetch, apiError, signIn, sseResponse, sseText } from '../test/utils';
import type { RunEvent } from './events';
import { followRun, streamChat } from './stream';

const usage = { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2, estimated: false };
const done = { status: 'completed', usage, steps: 1, run_id: 'run-1', session_id: 'ses-1', stored: true };

describe('streamChat', () => {
  it('sends the request, reports the run and session ids, and delivers the events', async () => {
    signIn();
    const { calls } = mockFetch({
      'POST /api/v1/chat/completions': () =>
        sseResponse(
          [
            sseText([{ id: 1, event: 'message', data: 'Hello ' }]),
            ': ping\n\n',
            sseText([
              { id: 2, event: 'message', data: 'there' },
              { id: 3, event: 'done', data: done },
            ]),
          ],
          { 'X-Run-Id': 'run-1', 'X-Session-Id': 'ses-1' },
        ),
    });
    const events: RunEvent[] = [];
    let opened: unknown = null;
    await streamChat(
      { agent: 'calc', message: 'hi' },
      { signal: new AbortController().signal, onEvent: (e) => events.push(e), onOpen: (h) => (opened = h) },
    );
    expect(opened).toEqual({ runId: 'run-1', sessionId: 'ses-1' });
    expect(events.map((e) => e.id)).toEqual([1, 2, 3]);
    expect(calls[0]?.headers.get('Authorization')).toBe('Bearer access-1');
    expect(JSON.parse(calls[0]?.body ?? '')).toEqual({ agent: 'calc', message: 'hi' });
  });

  it('rejects with the server’s error before the stream, with Retry-After', async () => {
    signIn();
    mockFetch({
      'POST /api/v1/chat/completions': () =>
        apiError(429, 'rate_limited', "this tenant's rate limit of 600 requests per minute is reached", {
          'Retry-After': '12',
        }),
    });
    const error = await streamChat(
      { agent: 'calc', message: 'hi' },
      { signal: new AbortController().signal, onEvent: () => undefined, onOpen: () => undefined },
    ).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(ApiError);
    expect(error).toMatchObject({ status: 429, code: 'rate_limited', retryAfter: 12 });
  });

  it('resumes a dropped answer from the run’s events with Last-Event-ID, never re-posting', async () => {
    signIn();
    const { calls } = mockFetch({
      'POST /api/v1/chat/completions': () =>
        sseResponse([sseText([{ id: 1, event: 'message', data: 'word1 ' }, { id: 2, event: 'message', data: 'word2 ' }])], {
          'X-Run-Id': 'run-1',
          'X-Session-Id': 'ses-1',
        }),
      'GET /api/v1/runs/:id/events': () =>
        sseResponse([sseText([{ id: 3, event: 'message', data: 'word3' }, { id: 4, event: 'done', data: done }])]),
    });
    const events: RunEvent[] = [];
    await streamChat(
      { agent: 'calc', message: 'long' },
      { signal: new AbortController().signal, onEvent: (e) => events.push(e), onOpen: () => undefined },
    );
    expect(events.map((e) => e.id)).toEqual([1, 2, 3, 4]);
    const posts = calls.filter((c) => c.method === 'POST');
    expect(posts).toHaveLength(1);
    const follow = calls.find((c) => c.path === '/api/v1/runs/run-1/events');
    expect(follow?.headers.get('Last-Event-ID')).toBe('2');
  });
});

describe('followRun', () => {
  it('reconnects with the last id it saw until done arrives', async () => {
    signIn();
    let attempt = 0;
    const { calls } = mockFetch({
      'GET /api/v1/runs/:id/events': () => {
        attempt += 1;
        if (attempt === 1) return sseResponse([sseText([{ id: 6, event: 'message', data: 'a' }])]);
        return sseResponse([sseText([{ id: 6, event: 'message', data: 'a' }, { id: 7, event: 'done', data: done }])]);
      },
    });
    const events: RunEvent[] = [];
    await followRun('run-1', 5, {
      signal: new AbortController().signal,
      onEvent: (e) => events.push(e),
      retryDelay: () => 1,
    });
    expect(calls.map((c) => c.headers.get('Last-Event-ID'))).toEqual(['5', '6']);
    // Event 6 came twice but is delivered once.
    expect(events.map((e) => e.id)).toEqual([6, 7]);
  });

  it('gives up with a 404 when the run is gone', async () => {
    signIn();
    mockFetch({ 'GET /api/v1/runs/:id/events': () => apiError(404, 'not_found', 'run not found') });
    await expect(
      followRun('run-x', 0, { signal: new AbortController().signal, onEvent: () => undefined }),
    ).rejects.toMatchObject({ status: 404, code: 'not_found' });
  });
});
