/** Turns a session's stored messages into the turns the chat shows. */
import type { Message } from '../api/client';
import type { Part } from './runState';

export type Turn =
  | { kind: 'user'; key: string; runId: string | null; text: string }
  | { kind: 'assistant'; key: string; runId: string | null; parts: Part[] };

export function messagesToTurns(messages: Message[]): Turn[] {
  const turns: Turn[] = [];
  for (const message of messages) {
    const runId = message.run_id ?? null;
    if (message.role === 'system') continue;
    if (message.role === 'user') {
      turns.push({ kind: 'user', key: message.id, runId, text: message.content });
      continue;
    }
    let turn = turns[turns.length - 1];
    if (!turn || turn.kind !== 'assistant' || turn.runId !== runId) {
      turn = { kind: 'assistant', key: message.id, runId, parts: [] };
      turns.push(turn);
    }
    const parts = turn.parts;
    if (message.role === 'assistant') {
      if (message.reasoning) parts.push({ kind: 'thought', text: message.reasoning });
      for (const call of message.tool_calls) {
        parts.push({ kind: 'tool', callId: call.id, name: call.name, arguments: call.arguments, result: null });
      }
      if (message.content) parts.push({ kind: 'text', text: message.content });
    } else if (message.role === 'tool') {
      const result = { content: message.content, isError: message.is_error };
      const call = parts.find((part) => part.kind === 'tool' && part.callId === message.tool_call_id && !part.result);
      if (call && call.kind === 'tool') {
        call.result = result;
      } else {
        parts.push({
          kind: 'tool',
          callId: message.tool_call_id ?? message.id,
          name: message.tool_name ?? 'tool',
          arguments: '',
          result,
        });
      }
    }
  }
  return turns;
}
