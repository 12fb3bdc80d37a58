import type { TokenUsage } from '../api/client';
import { CopyButton } from '../components/CopyButton';
import { Markdown } from '../components/Markdown';
import type { ErrorData, LimitData } from './events';
import { answerText, type LiveStatus, type Part } from './runState';
import { adviceFor } from '../api/errors';

function prettyArguments(raw: string): string {
  if (!raw) return '';
  try {
    return JSON.stringify(JSON.parse(raw), null, 2);
  } catch {
    return raw;
  }
}

function Step({ part, live }: { part: Exclude<Part, { kind: 'text' }>; live: boolean }) {
  if (part.kind === 'thought') {
    return (
      <details className="step step-thought">
        <summary>
          <span className="step-icon step-icon-thought" aria-hidden="true" /> Thought
          {live && <span className="step-state"> · thinking…</span>}
        </summary>
        <p className="step-text">{part.text}</p>
      </details>
    );
  }
  const state = part.result ? (part.result.isError ? 'failed' : 'done') : live ? 'running…' : 'no result';
  return (
    <details className={`step step-tool ${part.result?.isError ? 'step-error' : ''}`}>
      <summary>
        <span className="step-icon step-icon-tool" aria-hidden="true" /> Tool call: <code>{part.name}</code>
        <span className="step-state"> · {state}</span>
      </summary>
      <div className="step-body">
        {part.arguments && (
          <>
            <div className="step-label">Arguments</div>
            <pre className="step-pre">{prettyArguments(part.arguments)}</pre>
          </>
        )}
        {part.result && (
          <>
            <div className="step-label">{part.result.isError ? 'Error' : 'Result'}</div>
            <pre className="step-pre">{part.result.content}</pre>
          </>
        )}
      </div>
    </details>
  );
}

export function UserTurn({ text }: { text: string }) {
  return (
    <div className="turn turn-user">
      <div className="bubble bubble-user">{text}</div>
    </div>
  );
}

interface AssistantProps {
  parts: Part[];
  status?: LiveStatus;
  usage?: TokenUsage | null;
  limit?: LimitData | null;
  error?: ErrorData | null;
  streaming?: boolean;
}

const STATUS_LABEL: Partial<Record<LiveStatus, string>> = {
  connecting: 'Starting…',
  streaming: 'Writing…',
  resuming: 'Reconnecting…',
  cancelled: 'Stopped',
  failed: 'Failed',
  limited: 'Stopped by a limit',
};

export function AssistantTurn({ parts, status, usage, limit, error, streaming = false }: AssistantProps) {
  const text = answerText(parts);
  const label = status ? STATUS_LABEL[status] : undefined;
  return (
    <div className="turn turn-assistant" aria-busy={streaming}>
      <div className="bubble bubble-assistant">
        {parts.map((part, index) =>
          part.kind === 'text' ? (
            <Markdown key={index}>{part.text}</Markdown>
          ) : (
            <Step key={index} part={part} live={streaming && (part.kind === 'tool' || index === parts.length - 1)} />
          ),
        )}
        {streaming && parts.length === 0 && (
          <div className="typing" aria-label="Waiting for the answer">
            <span />
            <span />
            <span />
          </div>
        )}
        {limit && (
          <div className="inline-note inline-warning" role="status">
            <strong>Limit reached ({limit.reason}).</strong> {limit.message}
          </div>
        )}
        {error && (
          <div className="inline-note inline-error" role="alert">
            <strong>{adviceFor(error.code).title}.</strong> {error.message} <code>{error.code}</code>
            {adviceFor(error.code).hint && <div className="alert-hint">{adviceFor(error.code).hint}</div>}
          </div>
        )}
        <div className="turn-footer">
          {label && <span className={`turn-status status-${status}`}>{label}</span>}
          {usage && <span className="turn-usage">{usage.total_tokens} tokens</span>}
          {text && !streaming && <CopyButton text={text} label="Copy answer" />}
        </div>
      </div>
    </div>
  );
}
