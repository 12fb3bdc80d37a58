import { useDeferredValue, useState, type FormEvent } from 'react';
import { Link } from 'react-router';
import { useInfiniteQuery, useMutation, useQueryClient } from '@tanstack/react-query';
import { api, apiUrl, expectOk, unwrap, type ChatSession } from '../api/client';
import { authFetch } from '../api/auth';
import { readApiError } from '../api/errors';
import { keys, useAgents } from '../api/queries';
import { ErrorAlert, FormError } from '../components/ErrorAlert';
import { Loading } from '../components/Loading';
import { formatDateTime, formatRelative } from '../components/format';
import { usePermissions } from '../state/usePermissions';

const PAGE = 30;

function filenameFrom(response: Response, fallback: string): string {
  const disposition = response.headers.get('Content-Disposition') ?? '';
  const match = /filename\*?=(?:UTF-8'')?"?([^";]+)"?/i.exec(disposition);
  return match?.[1] ? decodeURIComponent(match[1]) : fallback;
}

async function downloadExport(session: ChatSession, format: 'markdown' | 'json') {
  const response = await authFetch(apiUrl('/api/v1/sessions/{id}/export', { id: session.id }, { format }));
  if (!response.ok) throw await readApiError(response);
  const blob = await response.blob();
  const url = URL.createObjectURL(blob);
  const link = document.createElement('a');
  link.href = url;
  link.download = filenameFrom(response, `session-${session.id}.${format === 'markdown' ? 'md' : 'json'}`);
  document.body.appendChild(link);
  link.click();
  link.remove();
  window.setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

function SessionRow({ session, agentName, canWrite }: { session: ChatSession; agentName: string; canWrite: boolean }) {
  const queryClient = useQueryClient();
  const [editing, setEditing] = useState(false);
  const [title, setTitle] = useState(session.title);
  const [exportError, setExportError] = useState<unknown>(null);

  const rename = useMutation({
    mutationFn: (newTitle: string) =>
      unwrap(api.PATCH('/api/v1/sessions/{id}', { params: { path: { id: session.id } }, body: { title: newTitle } })),
    onSuccess: () => {
      setEditing(false);
      void queryClient.invalidateQueries({ queryKey: keys.sessionsAll });
    },
  });
  const remove = useMutation({
    mutationFn: () => expectOk(api.DELETE('/api/v1/sessions/{id}', { params: { path: { id: session.id } } })),
    onSuccess: () => void queryClient.invalidateQueries({ queryKey: keys.sessionsAll }),
  });

  const onRename = (event: FormEvent) => {
    event.preventDefault();
    if (title.trim()) rename.mutate(title.trim());
  };

  const exportAs = async (format: 'markdown' | 'json') => {
    setExportError(null);
    try {
      await downloadExport(session, format);
    } catch (err) {
      setExportError(err);
    }
  };

  return (
    <li className="list-row session-row">
      {editing ? (
        <form className="inline-form" onSubmit={onRename}>
          <label htmlFor={`title-${session.id}`}>New title</label>
          <input
            id={`title-${session.id}`}
            value={title}
            onChange={(e) => setTitle(e.target.value)}
            maxLength={200}
            required
            autoFocus
          />
          <button type="submit" className="btn btn-small btn-primary" disabled={rename.isPending}>
            Save
          </button>
          <button
            type="button"
            className="btn btn-small btn-ghost"
            onClick={() => {
              setEditing(false);
              setTitle(session.title);
            }}
          >
            Cancel
          </button>
          <FormError error={rename.error} />
        </form>
      ) : (
        <div className="row-main">
          <Link to={`/chat/${session.id}`} className="row-title">
            {session.title}
          </Link>
          <div className="row-meta">
            {agentName} · <time dateTime={session.updated_at} title={formatDateTime(session.updated_at)}>{formatRelative(session.updated_at)}</time>
          </div>
        </div>
      )}
      {!editing && (
        <div className="row-actions">
          <Link to={`/chat/${session.id}`} className="btn btn-small" aria-label={`Open ${session.title}`}>
            Open
          </Link>
          {canWrite && (
            <button type="button" className="btn btn-small btn-ghost" onClick={() => setEditing(true)} aria-label={`Rename ${session.title}`}>
              Rename
            </button>
          )}
          <span className="row-label">Export</span>
          <button type="button" className="btn btn-small btn-ghost" onClick={() => void exportAs('markdown')} aria-label={`Export ${session.title} as Markdown`}>
            Markdown
          </button>
          <button type="button" className="btn btn-small btn-ghost" onClick={() => void exportAs('json')} aria-label={`Export ${session.title} as JSON`}>
            JSON
          </button>
          {canWrite && (
            <button
              type="button"
              className="btn btn-small btn-danger-ghost"
              disabled={remove.isPending}
              aria-label={`Delete ${session.title}`}
              onClick={() => {
                if (window.confirm(`Delete "${session.title}" and its messages?`)) remove.mutate();
              }}
            >
              Delete
            </button>
          )}
        </div>
      )}
      {(exportError || remove.error) && (
        <div className="row-error">
          <FormError error={exportError ?? remove.error} />
        </div>
      )}
    </li>
  );
}

export function SessionsPage() {
  const { writeSessions } = usePermissions();
  const agents = useAgents();
  const [search, setSearch] = useState('');
  const q = useDeferredValue(search.trim());
  const sessions = useInfiniteQuery({
    queryKey: keys.sessions(q),
    initialPageParam: 0,
    queryFn: async ({ pageParam }) =>
      unwrap(
        api.GET('/api/v1/sessions', {
          params: { query: { ...(q ? { q } : {}), limit: PAGE, offset: pageParam } },
        }),
      ),
    getNextPageParam: (last, pages) => (last.items.length < PAGE ? undefined : pages.length * PAGE),
  });
  const agentNames = new Map((agents.data ?? []).map((agent) => [agent.id, agent.display_name]));
  const items = sessions.data?.pages.flatMap((page) => page.items) ?? [];

  return (
    <div className="page">
      <header className="page-header">
        <h1>Sessions</h1>
        <Link to="/chat" className="btn btn-primary">
          New chat
        </Link>
      </header>
      <div className="toolbar">
        <div className="field field-grow">
          <label htmlFor="session-search">Search titles</label>
          <input
            id="session-search"
            type="search"
            value={search}
            onChange={(e) => setSearch(e.target.value)}
            placeholder="e.g. invoice"
            maxLength={200}
          />
        </div>
      </div>
      {sessions.isLoading && <Loading />}
      {sessions.error && <ErrorAlert error={sessions.error} onRetry={() => void sessions.refetch()} />}
      {sessions.isSuccess && items.length === 0 && (
        <p className="empty-note">{q ? `No session title contains "${q}".` : 'No conversations yet.'}</p>
      )}
      <ul className="list" aria-label="Sessions">
        {items.map((session) => (
          <SessionRow
            key={session.id}
            session={session}
            agentName={agentNames.get(session.agent_id) ?? 'deleted agent'}
            canWrite={writeSessions}
          />
        ))}
      </ul>
      {sessions.hasNextPage && (
        <button type="button" className="btn" onClick={() => void sessions.fetchNextPage()} disabled={sessions.isFetchingNextPage}>
          {sessions.isFetchingNextPage ? 'Loading…' : 'Load more'}
        </button>
      )}
    </div>
  );
}
