/**
 * Streams a chat answer (POST /api/v1/chat/completions) and follows runs
 * (GET /api/v1/runs/{id}/events with Last-Event-ID), over @microsoft/fetch-event-source.
 *
 * The POST is never retried (that would start a second run): when its connection drops after
 * the run started, the rest is read from the run's event stream, which is retried with the last
 * event id until `done` arrives.
 */
import { fetchEventSource, type EventSourceMessage } from '@microsoft/fetch-event-source';
import { authFetch } from '../api/auth';
import { apiUrl, type ChatRequest } from '../api/client';
import { ApiError, readApiError } from '../api/errors';
import { parseRunEvent, type RunEvent } from './events';

export interface RunHeaders {
  runId: string | null;
  sessionId: string | null;
}

export interface StreamOptions {
  signal: AbortSignal;
  onEvent: (event: RunEvent) => void;
  /** Called when a dropped stream is being resumed. */
  onReconnect?: () => void;
  /** How many times to reconnect a run's event stream before giving up. */
  maxRetries?: number;
  /** Delay before the nth reconnection, in ms. */
  retryDelay?: (attempt: number) => number;
}

/** Marks errors that must not be retried. */
class FatalStreamError extends Error {
  override readonly cause: unknown;
  constructor(cause: unknown) {
    super(cause instanceof Error ? cause.message : String(cause));
    this.cause = cause;
  }
}

function unwrapFatal(err: unknown): unknown {
  return err instanceof FatalStreamError ? err.cause : err;
}

async function checkOpen(response: Response): Promise<void> {
  if (!response.ok) throw new FatalStreamError(await readApiError(response));
  const type = response.headers.get('content-type') ?? '';
  if (!type.startsWith('text/event-stream')) {
    throw new FatalStreamError(
      new ApiError(response.status, 'unexpected_response', `Expected an event stream, got "${type || 'nothing'}"`),
    );
  }
}

const defaultDelay = (attempt: number) => Math.min(500 * 2 ** (attempt - 1), 8000);

/**
 * Follows a run's events after `afterEventId`, reconnecting (with the last id seen) until
 * `done`. Resolves when `done` was received or the signal aborted; rejects with an ApiError
 * (404 when the run is gone) or after `maxRetries` failed reconnections.
 */
export async function followRun(runId: string, afterEventId: number, options: StreamOptions): Promise<void> {
  const { signal, onEvent, onReconnect, maxRetries = 6, retryDelay = defaultDelay } = options;
  let lastId = afterEventId;
  let sawDone = false;
  let failures = 0;
  try {
    await fetchEventSource(apiUrl('/api/v1/runs/{id}/events', { id: runId }), {
      method: 'GET',
      // Lower case: the library updates `last-event-id` itself as events arrive.
      headers: { 'last-event-id': String(afterEventId) },
      signal,
      openWhenHidden: true,
      fetch: authFetch,
      async onopen(response) {
        await checkOpen(response);
        failures = 0;
      },
      onmessage(message: EventSourceMessage) {
        const event = parseRunEvent(message);
        if (!event) return;
        if (event.name !== 'done' && event.id <= lastId) return;
        lastId = Math.max(lastId, event.id);
        if (event.name === 'done') sawDone = true;
        onEvent(event);
      },
      onclose() {
        if (!sawDone) throw new Error('the event stream closed before the run finished');
      },
      onerror(err: unknown) {
        if (err instanceof FatalStreamError) throw err;
        failures += 1;
        if (failures > maxRetries) throw new FatalStreamError(err);
        onReconnect?.();
        return retryDelay(failures);
      },
    });
  } catch (err) {
    throw unwrapFatal(err);
  }
}

/**
 * Sends a chat message and streams the answer. `onOpen` gets the run and session ids from the
 * response headers as soon as the stream starts. Errors before the stream (400, 403, 429, 503…)
 * reject with an ApiError. A connection lost mid-answer is resumed with `followRun`.
 */
export async function streamChat(
  body: ChatRequest,
  options: StreamOptions & { onOpen: (headers: RunHeaders) => void },
): Promise<void> {
  const { signal, onEvent, onOpen } = options;
  let runId: string | null = null;
  let lastId = 0;
  let sawDone = false;
  try {
    await fetchEventSource(apiUrl('/api/v1/chat/completions'), {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
      signal,
      openWhenHidden: true,
      fetch: authFetch,
      async onopen(response) {
        await checkOpen(response);
        runId = response.headers.get('X-Run-Id');
        onOpen({ runId, sessionId: response.headers.get('X-Session-Id') });
      },
      onmessage(message: EventSourceMessage) {
        const event = parseRunEvent(message);
        if (!event) return;
        lastId = Math.max(lastId, event.id);
        if (event.name === 'done') sawDone = true;
        onEvent(event);
      },
      onerror(err: unknown) {
        // Never retry the POST: it would start another run.
        throw err instanceof FatalStreamError ? err : new FatalStreamError(err);
      },
    });
  } catch (err) {
    const cause = unwrapFatal(err);
    if (runId === null || cause instanceof ApiError || signal.aborted) throw cause;
  }
  if (signal.aborted || sawDone || runId === null) return;
  options.onReconnect?.();
  await followRun(runId, lastId, options);
}
