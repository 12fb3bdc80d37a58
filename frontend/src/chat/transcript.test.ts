import { describe, expect, it } from 'vitest';
import type { Message } from '../api/client';
import { messagesToTurns } from './transcript';

function message(partial: Partial<Message>): Message {
  return {
    id: Math.random().toString(36).slice(2),
    session_id: 's',
    run_id: 'r1',
    role: 'assistant',
    content: '',
    reasoning: '',
    tool_calls: [],
    is_error: false,
    prompt_tokens: 0,
    completion_tokens: 0,
    created_at: '2026-11-25T18:47:26Z',
    ...partial,
  };
}

describe('messagesToTurns', () => {
  it('groups a run’s assistant and tool messages into one turn with its steps', () => {
    const turns = messagesToTurns([
      message({ role: 'user', content: 'What is 6 * 7?' }),
      message({
        role: 'assistant',
        reasoning: 'Needs the calculator.',
        tool_calls: [{ id: 'call_1', name: 'calculator', arguments: '{"expression":"6 * 7"}' }],
      }),
      message({ role: 'tool', content: '42', tool_call_id: 'call_1', tool_name: 'calculator' }),
      message({ role: 'assistant', reasoning: 'Done.', content: 'The calculator tool returned: 42' }),
      message({ role: 'user', content: 'Thanks', run_id: 'r2' }),
    ]);
    expect(turns.map((t) => t.kind)).toEqual(['user', 'assistant', 'user']);
    const answer = turns[1];
    expect(answer?.kind).toBe('assistant');
    if (answer?.kind !== 'assistant') return;
    expect(answer.parts).toEqual([
      { kind: 'thought', text: 'Needs the calculator.' },
      {
        kind: 'tool',
        callId: 'call_1',
        name: 'calculator',
        arguments: '{"expression":"6 * 7"}',
        result: { content: '42', isError: false },
      },
      { kind: 'thought', text: 'Done.' },
      { kind: 'text', text: 'The calculator tool returned: 42' },
    ]);
  });
});
