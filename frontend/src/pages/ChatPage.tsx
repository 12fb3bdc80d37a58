import { useNavigate, useParams, Link } from 'react-router';
import { ChatPanel } from '../chat/ChatPanel';
import { ACTIVE_RUN_KEY } from '../chat/useChatRun';
import { useAgents, useSession } from '../api/queries';
import { ErrorAlert } from '../components/ErrorAlert';
import { usePermissions } from '../state/usePermissions';
import { useUi } from '../state/ui';

export function ChatPage() {
  const { sessionId } = useParams();
  const navigate = useNavigate();
  const { chat: canChat, writeAgents } = usePermissions();
  const agents = useAgents();
  const session = useSession(sessionId);
  const lastAgent = useUi((state) => state.lastAgent);
  const setLastAgent = useUi((state) => state.setLastAgent);

  const agentList = agents.data ?? [];
  const picked = agentList.find((agent) => agent.id === lastAgent) ?? agentList[0] ?? null;
  const sessionAgent = session.data ? agentList.find((agent) => agent.id === session.data.agent_id) : undefined;

  return (
    <div className="page page-chat">
      <header className="page-header chat-header">
        <div>
          <h1>{sessionId ? (session.data?.title ?? 'Chat') : 'New chat'}</h1>
          {sessionId && session.data && (
            <p className="muted">
              with <strong>{sessionAgent?.display_name ?? sessionAgent?.name ?? 'a deleted agent'}</strong>
            </p>
          )}
        </div>
        <div className="header-actions">
          {!sessionId && canChat && agentList.length > 0 && (
            <div className="field field-inline">
              <label htmlFor="chat-agent">Agent</label>
              <select
                id="chat-agent"
                value={picked?.id ?? ''}
                onChange={(event) => setLastAgent(event.target.value)}
              >
                {agentList.map((agent) => (
                  <option key={agent.id} value={agent.id}>
                    {agent.display_name} ({agent.model})
                  </option>
                ))}
              </select>
            </div>
          )}
          {sessionId && canChat && (
            <button type="button" className="btn" onClick={() => navigate('/chat')}>
              New chat
            </button>
          )}
        </div>
      </header>
      {agents.error && <ErrorAlert error={agents.error} onRetry={() => void agents.refetch()} />}
      {session.error && <ErrorAlert error={session.error} />}
      {!sessionId && agents.isSuccess && agentList.length === 0 ? (
        <div className="empty-state">
          <h2>No agents yet</h2>
          {writeAgents ? (
            <p>
              <Link to="/agents/new" className="btn btn-primary">
                Create an agent
              </Link>
            </p>
          ) : (
            <p className="muted">Ask an admin of your tenant to create one.</p>
          )}
        </div>
      ) : (
        <ChatPanel
          sessionId={sessionId ?? null}
          agent={sessionId ? null : (picked?.id ?? null)}
          canChat={canChat}
          persistKey={ACTIVE_RUN_KEY}
          onSessionStarted={(id) => {
            if (id !== sessionId) navigate(`/chat/${id}`, { replace: true });
          }}
          readOnlyNote="Viewers can read their conversations but cannot chat."
          emptyNote={
            sessionId
              ? 'This conversation has no messages yet.'
              : canChat
                ? 'Pick an agent and send a message to start a conversation.'
                : 'Your past conversations are under Sessions.'
          }
        />
      )}
    </div>
  );
}
