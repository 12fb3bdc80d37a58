import { Link } from 'react-router';
import { useAgents } from '../api/queries';
import { ErrorAlert } from '../components/ErrorAlert';
import { Loading } from '../components/Loading';
import { usePermissions } from '../state/usePermissions';

export function AgentsPage() {
  const agents = useAgents();
  const { writeAgents, chat } = usePermissions();
  return (
    <div className="page">
      <header className="page-header">
        <div>
          <h1>Agents</h1>
          <p className="muted">A model, a system prompt, tools and limits. Agents are shared by everyone in the tenant.</p>
        </div>
        {writeAgents && (
          <Link to="/agents/new" className="btn btn-primary">
            New agent
          </Link>
        )}
      </header>
      {agents.isLoading && <Loading />}
      {agents.error && <ErrorAlert error={agents.error} onRetry={() => void agents.refetch()} />}
      {agents.isSuccess && agents.data.length === 0 && (
        <div className="empty-state">
          <h2>No agents yet</h2>
          <p className="muted">
            {writeAgents ? 'Create one to start chatting. The built-in mock model needs no API key.' : 'Ask an admin of your tenant to create one.'}
          </p>
        </div>
      )}
      <div className="card-grid">
        {agents.data?.map((agent) => (
          <article key={agent.id} className="card agent-card">
            <h2 className="card-title">
              <Link to={`/agents/${agent.id}`}>{agent.display_name}</Link>
            </h2>
            <p className="card-sub">
              <code>{agent.name}</code> · {agent.provider_id === 'mock' ? 'mock' : agent.provider_id} / {agent.model}
            </p>
            {agent.description && <p className="card-text">{agent.description}</p>}
            <div className="chips" aria-label="Tools">
              {agent.tools.length === 0 ? <span className="chip chip-muted">no tools</span> : agent.tools.map((tool) => <span key={tool} className="chip">{tool}</span>)}
            </div>
            <div className="card-actions">
              <Link to={`/agents/${agent.id}`} className="btn btn-small" aria-label={`${writeAgents ? 'Edit' : 'View'} ${agent.name}`}>
                {writeAgents ? 'Edit' : 'View'}
              </Link>
              {chat && (
                <Link to={`/agents/${agent.id}#try`} className="btn btn-small btn-ghost" aria-label={`Try ${agent.name}`}>
                  Try it
                </Link>
              )}
            </div>
          </article>
        ))}
      </div>
    </div>
  );
}
