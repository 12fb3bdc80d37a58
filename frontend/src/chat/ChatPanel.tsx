import { Fragment, useEffect, useRef, useState, type FormEvent, type KeyboardEvent } from 'react';
import { useQueryClient } from '@tanstack/react-query';
import { ErrorAlert } from '../components/ErrorAlert';
import { Loading } from '../components/Loading';
import { keys, useMessages } from '../api/queries';
import { messagesToTurns } from './transcript';
import { AssistantTurn, UserTurn } from './Turns';
import { useChatRun } from './useChatRun';
import type { LiveRun } from './runState';

interface Props {
  /** The session shown (null: a new chat). */
  sessionId: string | null;
  /** The agent for a new chat (id or name). */
  agent: string | null;
  canChat: boolean;
  /** Keep the streaming run in sessionStorage to resume it after a reload. */
  persistKey?: string;
  onSessionStarted?: (sessionId: string) => void;
  /** Shown in place of the composer when the user cannot chat. */
  readOnlyNote?: string;
  emptyNote?: string;
  compact?: boolean;
}

export function ChatPanel({
  sessionId,
  agent,
  canChat,
  persistKey,
  onSessionStarted,
  readOnlyNote = 'Your role can read conversations but not chat.',
  emptyNote = 'Send a message to start.',
  compact = false,
}: Props) {
  const queryClient = useQueryClient();
  const messages = useMessages(sessionId);
  const [draft, setDraft] = useState('');
  const [lastSent, setLastSent] = useState<{ message: string; agent: string | null; sessionId: string | null } | null>(
    null,
  );
  const { run, error, outcomes, send, stop, clearError } = useChatRun({
    persistKey,
    resumeSessionId: sessionId,
    onSession: (id) => onSessionStarted?.(id),
    onDone: async (finished: LiveRun) => {
      const id = finished.done?.session_id ?? finished.sessionId;
      void queryClient.invalidateQueries({ queryKey: keys.sessionsAll, refetchType: 'none' });
      void queryClient.invalidateQueries({ queryKey: keys.quota });
      if (id) {
        await queryClient.invalidateQueries({ queryKey: keys.messages(id) });
        void queryClient.invalidateQueries({ queryKey: keys.session(id) });
      }
    },
  });

  // The live run is shown only in its own session (or in a new chat before it has one).
  const live = run && (run.sessionId === null || run.sessionId === sessionId) ? run : null;
  const streaming = live !== null && live.done === null;
  const stored = sessionId ? (messages.data ?? []) : [];
  const turns = messagesToTurns(live?.runId ? stored.filter((m) => m.run_id !== live.runId) : stored);

  const endRef = useRef<HTMLDivElement>(null);
  const partsCount = live?.parts.length ?? 0;
  const liveLength = live ? live.parts.reduce((n, p) => n + ('text' in p ? p.text.length : 1), 0) : 0;
  useEffect(() => {
    endRef.current?.scrollIntoView?.({ block: 'end' });
  }, [turns.length, partsCount, liveLength]);

  const submit = (message: string, target: { agent: string | null; sessionId: string | null }) => {
    const text = message.trim();
    if (!text || streaming) return;
    if (!target.sessionId && !target.agent) return;
    setLastSent({ message: text, ...target });
    setDraft('');
    void send({ message: text, agent: target.agent ?? undefined, sessionId: target.sessionId });
  };

  const onSubmit = (event: FormEvent) => {
    event.preventDefault();
    submit(draft, { agent, sessionId });
  };

  const onKeyDown = (event: KeyboardEvent<HTMLTextAreaElement>) => {
    if (event.key === 'Enter' && !event.shiftKey && !event.nativeEvent.isComposing) {
      event.preventDefault();
      submit(draft, { agent, sessionId });
    }
  };

  const nothingYet = turns.length === 0 && !live && !messages.isLoading;

  return (
    <div className={`chat-panel ${compact ? 'chat-compact' : ''}`}>
      <div className="transcript" aria-live="polite" aria-label="Conversation">
        {messages.isLoading && sessionId && <Loading label="Loading messages…" />}
        {messages.error && <ErrorAlert error={messages.error} onRetry={() => void messages.refetch()} />}
        {nothingYet && <p className="empty-note">{emptyNote}</p>}
        {turns.map((turn, index) => {
          // How a run ended, when it did not simply complete, goes after its last turn.
          const next = turns[index + 1];
          const outcome = turn.runId && (!next || next.runId !== turn.runId) ? outcomes[turn.runId] : undefined;
          if (turn.kind === 'assistant') {
            return (
              <AssistantTurn
                key={turn.key}
                parts={turn.parts}
                status={outcome?.status}
                error={outcome?.error}
                limit={outcome?.limit}
              />
            );
          }
          return (
            <Fragment key={turn.key}>
              <UserTurn text={turn.text} />
              {outcome && <AssistantTurn parts={[]} status={outcome.status} error={outcome.error} limit={outcome.limit} />}
            </Fragment>
          );
        })}
        {live && (
          <div className="live-run" data-testid="live-run">
            <UserTurn text={live.userText} />
            <AssistantTurn
              parts={live.parts}
              status={live.status}
              usage={live.usage}
              limit={live.limit}
              error={live.error}
              streaming={streaming}
            />
          </div>
        )}
        {error && (
          <ErrorAlert
            error={error}
            onDismiss={clearError}
            onRetry={
              lastSent && canChat
                ? () => submit(lastSent.message, { agent: lastSent.agent, sessionId: lastSent.sessionId })
                : undefined
            }
          />
        )}
        <div ref={endRef} />
      </div>
      {canChat ? (
        <form className="composer" onSubmit={onSubmit}>
          <label htmlFor={compact ? 'try-message' : 'chat-message'} className="composer-label">
            Message
          </label>
          <textarea
            id={compact ? 'try-message' : 'chat-message'}
            value={draft}
            onChange={(event) => setDraft(event.target.value)}
            onKeyDown={onKeyDown}
            placeholder={agent || sessionId ? 'Ask something… (Enter to send, Shift+Enter for a new line)' : 'Pick an agent first'}
            rows={compact ? 2 : 3}
            maxLength={32000}
            disabled={!agent && !sessionId}
          />
          <div className="composer-actions">
            {streaming ? (
              <button type="button" className="btn btn-danger" onClick={() => void stop()} disabled={!live?.runId}>
                Stop
              </button>
            ) : (
              <button type="submit" className="btn btn-primary" disabled={!draft.trim() || (!agent && !sessionId)}>
                Send
              </button>
            )}
          </div>
        </form>
      ) : (
        <p className="read-only-note">{readOnlyNote}</p>
      )}
    </div>
  );
}
