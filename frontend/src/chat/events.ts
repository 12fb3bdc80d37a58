/** The chat event protocol (docs/api.md, "The event protocol"). */
import type { TokenUsage } from '../api/client';

export type EventName = 'message' | 'thought' | 'tool_call' | 'tool_result' | 'usage' | 'limit' | 'error' | 'done';

export interface ToolCallData {
  id: string;
  name: string;
  arguments: string;
}
export interface ToolResultData {
  id: string;
  name: string;
  content: string;
  is_error: boolean;
}
export interface LimitData {
  reason: string;
  message: string;
}
export interface ErrorData {
  code: string;
  message: string;
}
export type RunStatus = 'completed' | 'failed' | 'cancelled' | 'limited';
export interface DoneData {
  status: RunStatus;
  usage: TokenUsage;
  steps: number;
  run_id: string;
  session_id: string | null;
  stored: boolean;
}

export type RunEvent =
  | { id: number; name: 'message'; data: string }
  | { id: number; name: 'thought'; data: string }
  | { id: number; name: 'tool_call'; data: ToolCallData }
  | { id: number; name: 'tool_result'; data: ToolResultData }
  | { id: number; name: 'usage'; data: TokenUsage }
  | { id: number; name: 'limit'; data: LimitData }
  | { id: number; name: 'error'; data: ErrorData }
  | { id: number; name: 'done'; data: DoneData };

const NAMES: ReadonlySet<string> = new Set([
  'message',
  'thought',
  'tool_call',
  'tool_result',
  'usage',
  'limit',
  'error',
  'done',
]);

/** Parses one SSE message (`id`, `event`, `data` lines). Unknown or malformed events give null. */
export function parseRunEvent(message: { id?: string; event?: string; data: string }): RunEvent | null {
  if (!message.data) return null;
  let payload: unknown;
  try {
    payload = JSON.parse(message.data);
  } catch {
    return null;
  }
  if (!payload || typeof payload !== 'object') return null;
  const envelope = payload as { event?: unknown; data?: unknown };
  const name = typeof envelope.event === 'string' ? envelope.event : message.event;
  if (!name || !NAMES.has(name)) return null;
  const id = Number(message.id);
  return { id: Number.isFinite(id) ? id : 0, name, data: envelope.data } as RunEvent;
}
