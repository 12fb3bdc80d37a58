/** An error answer of the API: `{"error": {"code", "message"}}` plus the HTTP status. */
export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  /** Seconds from the `Retry-After` header (429 and 503 answers), if any. */
  readonly retryAfter: number | null;

  constructor(status: number, code: string, message: string, retryAfter: number | null = null) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

export function parseRetryAfter(value: string | null): number | null {
  if (!value) return null;
  const seconds = Number(value.trim());
  if (Number.isFinite(seconds) && seconds >= 0) return Math.ceil(seconds);
  const date = Date.parse(value);
  if (!Number.isNaN(date)) return Math.max(0, Math.ceil((date - Date.now()) / 1000));
  return null;
}

function errorDetail(body: unknown): { code: string; message: string } | null {
  if (body && typeof body === 'object' && 'error' in body) {
    const detail = (body as { error: unknown }).error;
    if (detail && typeof detail === 'object') {
      const { code, message } = detail as { code?: unknown; message?: unknown };
      if (typeof code === 'string') {
        return { code, message: typeof message === 'string' ? message : code };
      }
    }
  }
  return null;
}

/** Builds an ApiError from a failed response whose body was already parsed (or not). */
export function apiErrorFrom(response: Response, body: unknown): ApiError {
  const retryAfter = parseRetryAfter(response.headers.get('Retry-After'));
  const detail = errorDetail(body);
  if (detail) return new ApiError(response.status, detail.code, detail.message, retryAfter);
  return new ApiError(
    response.status,
    `http_${response.status}`,
    `The server answered ${response.status} ${response.statusText}`.trim(),
    retryAfter,
  );
}

/** Reads a failed response's body and turns it into an ApiError. */
export async function readApiError(response: Response): Promise<ApiError> {
  let body: unknown;
  try {
    const text = await response.text();
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  return apiErrorFrom(response, body);
}

export interface ErrorAdvice {
  title: string;
  /** What the user can do, when the server's message does not say it already. */
  hint?: string;
}

/** A headline and a hint for the error codes a person is likely to meet. */
export function adviceFor(code: string): ErrorAdvice {
  switch (code) {
    case 'token_quota_exceeded':
      return { title: 'Monthly token quota reached', hint: 'Wait for the quota to reset or ask an operator to raise it.' };
    case 'rate_limited':
      return { title: 'Too many requests', hint: 'Slow down and try again shortly.' };
    case 'too_many_concurrent_runs':
      return { title: 'Too many runs in progress', hint: 'Wait for a running answer to finish, then retry.' };
    case 'quota_unavailable':
      return { title: 'Quota service unavailable', hint: 'The platform cannot check quotas right now; retry in a moment.' };
    case 'plan_limit_reached':
      return { title: 'Plan limit reached', hint: 'Remove something you no longer need, or ask for a larger plan.' };
    case 'too_many_login_attempts':
      return { title: 'Too many login attempts' };
    case 'forbidden':
    case 'insufficient_scope':
      return { title: 'Not allowed' };
    case 'upstream_rate_limited':
      return { title: 'The model provider is rate limiting', hint: 'Retry in a little while.' };
    case 'upstream_unavailable':
    case 'upstream_timeout':
    case 'upstream_bad_response':
      return { title: 'The model provider failed', hint: 'Retry shortly; if it keeps failing, check the provider.' };
    case 'upstream_unauthorized':
      return { title: 'The model provider refused its API key', hint: 'An admin must fix the provider credentials.' };
    case 'upstream_rejected':
      return { title: 'The model provider rejected the request' };
    case 'network_error':
      return { title: 'Cannot reach the server', hint: 'Check your connection and retry.' };
    default:
      return { title: 'Something went wrong' };
  }
}

/** Anything thrown → something to show. */
export function toApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  if (err instanceof Error) return new ApiError(0, 'network_error', err.message);
  return new ApiError(0, 'unknown_error', String(err));
}
