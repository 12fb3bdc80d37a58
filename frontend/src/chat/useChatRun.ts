import { useCallback, useEffect, useRef, useState } from 'react';
import { api, expectOk } from '../api/client';
import { ApiError, toApiError } from '../api/errors';
import type { RunEvent } from './events';
import { applyEvent, newRun, type LiveRun, type LiveStatus } from './runState';
import type { ErrorData, LimitData } from './events';

/** How a run that did not simply complete ended (the stored messages do not say). */
export interface RunOutcome {
  status: LiveStatus;
  error: ErrorData | null;
  limit: LimitData | null;
}
import { followRun, streamChat } from './stream';

/** sessionStorage key of the run being streamed, so a reload can resume it. */
export const ACTIVE_RUN_KEY = 'paas.activeRun';

export interface SendRequest {
  message: string;
  agent?: string;
  sessionId?: string | null;
}

interface Options {
  /** Persist the run in sessionStorage under this key (the chat page does; "try it" does not). */
  persistKey?: string;
  /** Resume the persisted run if it belongs to this session. */
  resumeSessionId?: string | null;
  /** The server named the run's session (a new chat got one). */
  onSession?: (sessionId: string) => void;
  /** The run finished (after `done`); e.g. reload the stored messages. */
  onDone?: (run: LiveRun) => Promise<void> | void;
}

export function loadSavedRun(key: string): LiveRun | null {
  try {
    const raw = sessionStorage.getItem(key);
    if (!raw) return null;
    const run = JSON.parse(raw) as LiveRun;
    if (!run || typeof run.runId !== 'string' || !Array.isArray(run.parts)) return null;
    return run;
  } catch {
    return null;
  }
}

function saveRun(key: string | undefined, run: LiveRun | null): void {
  if (!key) return;
  try {
    if (run && run.runId && !run.done) sessionStorage.setItem(key, JSON.stringify(run));
    else sessionStorage.removeItem(key);
  } catch {
    // Storage full or unavailable: resuming after a reload will not work, streaming still does.
  }
}

function initialRun(options: Options): LiveRun | null {
  if (!options.persistKey || !options.resumeSessionId) return null;
  const saved = loadSavedRun(options.persistKey);
  if (!saved || saved.sessionId !== options.resumeSessionId) return null;
  return { ...saved, status: 'resuming' };
}

/**
 * One chat run at a time: send a message and stream the answer, stop it, and resume it after a
 * reload (the run id and last event id are kept in sessionStorage while it streams).
 */
export function useChatRun(options: Options = {}) {
  const [run, setRun] = useState<LiveRun | null>(() => initialRun(options));
  const [error, setError] = useState<ApiError | null>(null);
  const [outcomes, setOutcomes] = useState<Record<string, RunOutcome>>({});
  const runRef = useRef<LiveRun | null>(run);
  const abortRef = useRef<AbortController | null>(null);
  const optionsRef = useRef(options);
  useEffect(() => {
    optionsRef.current = options;
  });

  const update = useCallback((next: LiveRun | null) => {
    runRef.current = next;
    setRun(next);
    saveRun(optionsRef.current.persistKey, next);
  }, []);

  const finish = useCallback(
    async (controller: AbortController) => {
      const finished = runRef.current;
      if (!finished || controller.signal.aborted) return;
      if (finished.done) {
        const runId = finished.runId ?? finished.done.run_id;
        if (finished.done.status !== 'completed' || finished.error || finished.limit) {
          setOutcomes((prev) => ({
            ...prev,
            [runId]: { status: finished.done!.status, error: finished.error, limit: finished.limit },
          }));
        }
        try {
          await optionsRef.current.onDone?.(finished);
        } finally {
          // The stored messages now hold the answer; keep showing the live copy only if they
          // could not be stored.
          if (!controller.signal.aborted && runRef.current === finished && finished.done?.stored) {
            update(null);
          }
        }
      }
    },
    [update],
  );

  const handleEvent = useCallback(
    (controller: AbortController) => (event: RunEvent) => {
      if (controller.signal.aborted || !runRef.current) return;
      update(applyEvent(runRef.current, event));
    },
    [update],
  );

  const markResuming = useCallback(
    (controller: AbortController) => () => {
      const current = runRef.current;
      if (controller.signal.aborted || !current || current.done) return;
      update({ ...current, status: 'resuming' });
    },
    [update],
  );

  const startFollowing = useCallback(
    async (resumed: LiveRun) => {
      if (!resumed.runId) return;
      abortRef.current?.abort();
      const controller = new AbortController();
      abortRef.current = controller;
      try {
        await followRun(resumed.runId, resumed.lastEventId, {
          signal: controller.signal,
          onEvent: handleEvent(controller),
          onReconnect: markResuming(controller),
        });
        await finish(controller);
      } catch (err) {
        if (controller.signal.aborted) return;
        const apiError = toApiError(err);
        if (apiError.status === 404) {
          // The run is gone (or its events expired): show what is stored instead.
          update(null);
          await optionsRef.current.onDone?.(resumed);
          return;
        }
        setError(apiError);
        saveRun(optionsRef.current.persistKey, null);
      }
    },
    [finish, handleEvent, markResuming, update],
  );

  // Resume a run persisted before a reload.
  useEffect(() => {
    const current = runRef.current;
    if (current && current.status === 'resuming' && !abortRef.current) {
      void startFollowing(current);
    }
  }, [startFollowing]);

  useEffect(
    () => () => {
      abortRef.current?.abort();
      abortRef.current = null;
    },
    [],
  );

  const send = useCallback(
    async (request: SendRequest) => {
      abortRef.current?.abort();
      const controller = new AbortController();
      abortRef.current = controller;
      setError(null);
      update(newRun(request.message));
      try {
        await streamChat(
          {
            message: request.message,
            ...(request.agent && !request.sessionId ? { agent: request.agent } : {}),
            ...(request.sessionId ? { session_id: request.sessionId } : {}),
          },
          {
            signal: controller.signal,
            onOpen: ({ runId, sessionId }) => {
              const current = runRef.current;
              if (controller.signal.aborted || !current) return;
              update({ ...current, runId, sessionId, status: 'streaming' });
              if (sessionId) optionsRef.current.onSession?.(sessionId);
            },
            onEvent: handleEvent(controller),
            onReconnect: markResuming(controller),
          },
        );
        await finish(controller);
      } catch (err) {
        if (controller.signal.aborted) return;
        const apiError = toApiError(err);
        setError(apiError);
        const current = runRef.current;
        // Nothing was started: drop the pending turn (the error says why). A run that started
        // and then could not be followed stays visible with what arrived.
        if (!current || !current.runId) update(null);
        else saveRun(optionsRef.current.persistKey, null);
      }
    },
    [finish, handleEvent, markResuming, update],
  );

  const stop = useCallback(async () => {
    const current = runRef.current;
    if (!current?.runId || current.done) return;
    try {
      await expectOk(api.POST('/api/v1/runs/{id}/cancel', { params: { path: { id: current.runId } } }));
    } catch (err) {
      const apiError = toApiError(err);
      // Already finished: its `done` is on the way.
      if (apiError.code !== 'run_finished') setError(apiError);
    }
  }, []);

  /** Stops listening (the run goes on on the server) and forgets it here. */
  const detach = useCallback(() => {
    abortRef.current?.abort();
    abortRef.current = null;
    runRef.current = null;
    setRun(null);
    setError(null);
  }, []);

  const clearError = useCallback(() => setError(null), []);

  return { run, error, outcomes, send, stop, detach, clearError };
}
