import { lazy, useState } from 'react';
import { Navigate, Route, Routes, useLocation } from 'react-router';
import { Layout } from './components/Layout';
import { useAuth } from './state/auth';
import { LoginPage } from './pages/LoginPage';
import { SignupPage } from './pages/SignupPage';
import { NotFoundPage } from './pages/NotFoundPage';

// Pages load on demand: the chat (Markdown, highlighting) and usage (charts) code is large.
const ChatPage = lazy(() => import('./pages/ChatPage').then((m) => ({ default: m.ChatPage })));
const SessionsPage = lazy(() => import('./pages/SessionsPage').then((m) => ({ default: m.SessionsPage })));
const AgentsPage = lazy(() => import('./pages/AgentsPage').then((m) => ({ default: m.AgentsPage })));
const AgentPage = lazy(() => import('./pages/AgentPage').then((m) => ({ default: m.AgentPage })));
const SettingsPage = lazy(() => import('./pages/settings/SettingsPage').then((m) => ({ default: m.SettingsPage })));

function RequireAuth() {
  const signedIn = useAuth((state) => state.tokens !== null);
  const endedReason = useAuth((state) => state.endedReason);
  const location = useLocation();
  if (!signedIn) {
    // After an ended session (not a deliberate logout), come back here after logging in.
    const state = endedReason ? { from: location.pathname + location.search } : null;
    return <Navigate to="/login" replace state={state} />;
  }
  return <Layout />;
}

/** Login and signup: someone already signed in when opening them goes to the app instead. */
function PublicOnly({ children }: { children: React.ReactNode }) {
  // Only at first render: after a login on this page, the page itself navigates.
  const [signedInAtStart] = useState(() => useAuth.getState().tokens !== null);
  if (signedInAtStart) return <Navigate to="/chat" replace />;
  return children;
}

export function App() {
  return (
    <Routes>
      <Route path="/login" element={<PublicOnly><LoginPage /></PublicOnly>} />
      <Route path="/signup" element={<PublicOnly><SignupPage /></PublicOnly>} />
      <Route element={<RequireAuth />}>
        <Route index element={<Navigate to="/chat" replace />} />
        <Route path="/chat/:sessionId?" element={<ChatPage />} />
        <Route path="/sessions" element={<SessionsPage />} />
        <Route path="/agents" element={<AgentsPage />} />
        <Route path="/agents/new" element={<AgentPage />} />
        <Route path="/agents/:agentId" element={<AgentPage />} />
        <Route path="/settings" element={<Navigate to="/settings/profile" replace />} />
        <Route path="/settings/:tab" element={<SettingsPage />} />
        <Route path="*" element={<NotFoundPage />} />
      </Route>
    </Routes>
  );
}
