/** The state of one run as its events arrive: a pure reducer, shared by live and resumed streams. */
import type { TokenUsage } from '../api/client';
import type { DoneData, ErrorData, LimitData, RunEvent, RunStatus } from './events';

export type Part =
  | { kind: 'text'; text: string }
  | { kind: 'thought'; text: string }
  | {
      kind: 'tool';
      callId: string;
      name: string;
      arguments: string;
      result: { content: string; isError: boolean } | null;
    };

export type LiveStatus = 'connecting' | 'streaming' | 'resuming' | RunStatus;

export interface LiveRun {
  /** The user's message that started the run. */
  userText: string;
  runId: string | null;
  sessionId: string | null;
  /** The id of the last event applied (0 before the first). */
  lastEventId: number;
  parts: Part[];
  usage: TokenUsage | null;
  limit: LimitData | null;
  error: ErrorData | null;
  status: LiveStatus;
  done: DoneData | null;
}

export function newRun(userText: string): LiveRun {
  return {
    userText,
    runId: null,
    sessionId: null,
    lastEventId: 0,
    parts: [],
    usage: null,
    limit: null,
    error: null,
    status: 'connecting',
    done: null,
  };
}

export function isFinished(run: LiveRun): boolean {
  return run.done !== null;
}

/** Appends a delta to the last part when it is of the same kind, else starts a new part. */
function appendText(parts: Part[], kind: 'text' | 'thought', delta: string): Part[] {
  const last = parts[parts.length - 1];
  if (last && last.kind === kind) {
    return [...parts.slice(0, -1), { kind, text: last.text + delta }];
  }
  return [...parts, { kind, text: delta }];
}

/** Applies one event. Events at or below `lastEventId` were already applied and are ignored. */
export function applyEvent(run: LiveRun, event: RunEvent): LiveRun {
  if (run.done) return run;
  // A resumed stream may repeat events we have; `done` is always taken (an expired run's
  // stream is a single `done` rebuilt from the stored row, whatever its id).
  if (event.name !== 'done' && event.id > 0 && event.id <= run.lastEventId) return run;
  const next: LiveRun = {
    ...run,
    lastEventId: Math.max(run.lastEventId, event.id),
    status: run.status === 'connecting' || run.status === 'resuming' ? 'streaming' : run.status,
  };
  switch (event.name) {
    case 'message':
      return { ...next, parts: appendText(run.parts, 'text', String(event.data)) };
    case 'thought':
      return { ...next, parts: appendText(run.parts, 'thought', String(event.data)) };
    case 'tool_call':
      return {
        ...next,
        parts: [
          ...run.parts,
          {
            kind: 'tool',
            callId: event.data.id,
            name: event.data.name,
            arguments: event.data.arguments,
            result: null,
          },
        ],
      };
    case 'tool_result': {
      const result = { content: event.data.content, isError: event.data.is_error };
      const index = run.parts.findIndex((part) => part.kind === 'tool' && part.callId === event.data.id);
      if (index === -1) {
        return {
          ...next,
          parts: [
            ...run.parts,
            { kind: 'tool', callId: event.data.id, name: event.data.name, arguments: '', result },
          ],
        };
      }
      const parts = run.parts.map((part, i) => (i === index && part.kind === 'tool' ? { ...part, result } : part));
      return { ...next, parts };
    }
    case 'usage':
      return { ...next, usage: event.data };
    case 'limit':
      return { ...next, limit: event.data };
    case 'error':
      return { ...next, error: event.data };
    case 'done':
      return {
        ...next,
        done: event.data,
        status: event.data.status,
        usage: event.data.usage ?? next.usage,
        runId: next.runId ?? event.data.run_id,
        sessionId: next.sessionId ?? event.data.session_id,
      };
    default:
      return run;
  }
}

/** All the answer text of a run (what "copy answer" copies). */
export function answerText(parts: Part[]): string {
  return parts
    .filter((part): part is Extract<Part, { kind: 'text' }> => part.kind === 'text')
    .map((part) => part.text)
    .join('\n\n');
}
