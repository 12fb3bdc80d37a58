import { describe, expect, it } from 'vitest';
import { parseRunEvent, type RunEvent } from './events';
import { answerText, applyEvent, newRun, type LiveRun } from './runState';

const usage = { prompt_tokens: 10, completion_tokens: 5, total_tokens: 15, estimated: false };

function run(events: RunEvent[], start: LiveRun = newRun('What is 6 * 7?')): LiveRun {
  return events.reduce(applyEvent, start);
}

describe('parseRunEvent', () => {
  it('reads id, name and data from the JSON envelope', () => {
    const event = parseRunEvent({ id: '7', event: 'message', data: '{"event":"message","data":"Hi "}' });
    expect(event).toEqual({ id: 7, name: 'message', data: 'Hi ' });
  });

  it('ignores malformed and unknown events', () => {
    expect(parseRunEvent({ id: '1', event: 'message', data: 'not json' })).toBeNull();
    expect(parseRunEvent({ id: '1', event: 'weird', data: '{"event":"weird","data":1}' })).toBeNull();
    expect(parseRunEvent({ id: '1', event: 'message', data: '' })).toBeNull();
  });
});

describe('applyEvent', () => {
  it('joins message deltas into one text part and thought deltas into one thought', () => {
    const state = run([
      { id: 1, name: 'thought', data: 'Let me ' },
      { id: 2, name: 'thought', data: 'think.' },
      { id: 3, name: 'message', data: 'The answer ' },
      { id: 4, name: 'message', data: 'is 42.' },
    ]);
    expect(state.parts).toEqual([
      { kind: 'thought', text: 'Let me think.' },
      { kind: 'text', text: 'The answer is 42.' },
    ]);
    expect(state.lastEventId).toBe(4);
    expect(state.status).toBe('streaming');
    expect(answerText(state.parts)).toBe('The answer is 42.');
  });

  it('keeps thoughts, tool calls and answer text in the order they came', () => {
    const state = run([
      { id: 1, name: 'thought', data: 'Needs arithmetic.' },
      { id: 2, name: 'usage', data: usage },
      { id: 3, name: 'tool_call', data: { id: 'call_1', name: 'calculator', arguments: '{"expression":"6 * 7"}' } },
      { id: 4, name: 'tool_result', data: { id: 'call_1', name: 'calculator', content: '42', is_error: false } },
      { id: 5, name: 'thought', data: 'Got it.' },
      { id: 6, name: 'message', data: 'The calculator tool returned: 42' },
    ]);
    expect(state.parts.map((p) => p.kind)).toEqual(['thought', 'tool', 'thought', 'text']);
    expect(state.parts[1]).toEqual({
      kind: 'tool',
      callId: 'call_1',
      name: 'calculator',
      arguments: '{"expression":"6 * 7"}',
      result: { content: '42', isError: false },
    });
    expect(state.usage).toEqual(usage);
  });

  it('marks failed tool results', () => {
    const state = run([
      { id: 1, name: 'tool_call', data: { id: 'c', name: 'http_fetch', arguments: '{}' } },
      { id: 2, name: 'tool_result', data: { id: 'c', name: 'http_fetch', content: 'error: blocked', is_error: true } },
    ]);
    expect(state.parts[0]).toMatchObject({ kind: 'tool', result: { content: 'error: blocked', isError: true } });
  });

  it('records done with its status, usage and ids', () => {
    const state = run([
      { id: 1, name: 'message', data: 'Hi' },
      {
        id: 2,
        name: 'done',
        data: { status: 'completed', usage, steps: 1, run_id: 'r-1', session_id: 's-1', stored: true },
      },
    ]);
    expect(state.status).toBe('completed');
    expect(state.done?.run_id).toBe('r-1');
    expect(state.runId).toBe('r-1');
    expect(state.sessionId).toBe('s-1');
    expect(state.usage).toEqual(usage);
    // Nothing changes a finished run.
    expect(applyEvent(state, { id: 3, name: 'message', data: 'late' })).toBe(state);
  });

  it('keeps a provider error and ends as failed', () => {
    const state = run([
      { id: 1, name: 'message', data: 'Partial' },
      { id: 2, name: 'error', data: { code: 'upstream_unavailable', message: 'the model provider is unavailable' } },
      { id: 3, name: 'done', data: { status: 'failed', usage, steps: 1, run_id: 'r', session_id: 's', stored: true } },
    ]);
    expect(state.error).toEqual({ code: 'upstream_unavailable', message: 'the model provider is unavailable' });
    expect(state.status).toBe('failed');
    expect(answerText(state.parts)).toBe('Partial');
  });

  it('keeps a limit and ends as limited', () => {
    const state = run([
      { id: 1, name: 'limit', data: { reason: 'max_steps', message: 'too many steps' } },
      { id: 2, name: 'done', data: { status: 'limited', usage, steps: 8, run_id: 'r', session_id: 's', stored: true } },
    ]);
    expect(state.limit?.reason).toBe('max_steps');
    expect(state.status).toBe('limited');
  });

  it('ignores events it already has (a resumed stream may repeat them)', () => {
    const first = run([
      { id: 1, name: 'message', data: 'word1 ' },
      { id: 2, name: 'message', data: 'word2 ' },
    ]);
    const resumed = run(
      [
        { id: 2, name: 'message', data: 'word2 ' },
        { id: 3, name: 'message', data: 'word3' },
      ],
      first,
    );
    expect(answerText(resumed.parts)).toBe('word1 word2 word3');
    expect(resumed.lastEventId).toBe(3);
  });

  it('takes a done event whatever its id (an expired run answers with a rebuilt done)', () => {
    const first = run([{ id: 40, name: 'message', data: 'x' }]);
    const done = applyEvent(first, {
      id: 1,
      name: 'done',
      data: { status: 'completed', usage, steps: 1, run_id: 'r', session_id: 's', stored: true },
    });
    expect(done.status).toBe('completed');
  });
});
