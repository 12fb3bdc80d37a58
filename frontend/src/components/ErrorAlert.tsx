import { useEffect, useState } from 'react';
import { adviceFor, toApiError } from '../api/errors';

interface Props {
  error: unknown;
  onRetry?: () => void;
  onDismiss?: () => void;
}

function useCountdown(seconds: number | null) {
  const [left, setLeft] = useState(seconds);
  const [startedFor, setStartedFor] = useState(seconds);
  if (startedFor !== seconds) {
    setStartedFor(seconds);
    setLeft(seconds);
  }
  useEffect(() => {
    if (!left || left <= 0) return;
    const timer = window.setTimeout(() => setLeft((value) => (value ?? 1) - 1), 1000);
    return () => window.clearTimeout(timer);
  }, [left]);
  return left;
}

/** An API error as a person should see it: what happened, the server's message, what to do. */
export function ErrorAlert({ error, onRetry, onDismiss }: Props) {
  const apiError = toApiError(error);
  const advice = adviceFor(apiError.code);
  const left = useCountdown(apiError.retryAfter);
  return (
    <div className="alert alert-error" role="alert">
      <div className="alert-body">
        <strong className="alert-title">{advice.title}</strong>
        <p className="alert-message">{apiError.message}</p>
        {advice.hint && <p className="alert-hint">{advice.hint}</p>}
        {apiError.retryAfter !== null && (
          <p className="alert-retry">
            Retry after {apiError.retryAfter} s{left !== null && left > 0 && left !== apiError.retryAfter ? ` (${left} s left)` : ''}.
          </p>
        )}
        <p className="alert-code">
          <code>{apiError.code}</code>
          {apiError.status > 0 && <span> · HTTP {apiError.status}</span>}
        </p>
      </div>
      {(onRetry || onDismiss) && (
        <div className="alert-actions">
          {onRetry && (
            <button type="button" className="btn btn-small" onClick={onRetry} disabled={left !== null && left > 0}>
              Retry
            </button>
          )}
          {onDismiss && (
            <button type="button" className="btn btn-small btn-ghost" onClick={onDismiss}>
              Dismiss
            </button>
          )}
        </div>
      )}
    </div>
  );
}

/** A smaller, single-line form error. */
export function FormError({ error }: { error: unknown }) {
  if (!error) return null;
  const apiError = toApiError(error);
  return (
    <p className="form-error" role="alert">
      {apiError.message}
      {apiError.retryAfter !== null && ` Retry after ${apiError.retryAfter} s.`}
    </p>
  );
}
