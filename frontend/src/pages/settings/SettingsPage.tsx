import { lazy, Suspense } from 'react';
import { NavLink, Navigate, useParams } from 'react-router';
import { Loading } from '../../components/Loading';
import { usePermissions } from '../../state/usePermissions';
import { ProfileSettings } from './ProfileSettings';
import { ApiKeysSettings } from './ApiKeysSettings';
import { ProvidersSettings } from './ProvidersSettings';
import { MembersSettings } from './MembersSettings';

// Charts are only needed on this tab.
const UsageSettings = lazy(() => import('./UsageSettings').then((m) => ({ default: m.UsageSettings })));

const TABS = [
  { id: 'profile', label: 'Profile', admin: false },
  { id: 'keys', label: 'API keys', admin: false },
  { id: 'providers', label: 'Providers', admin: true },
  { id: 'members', label: 'Members', admin: true },
  { id: 'usage', label: 'Plan & usage', admin: false },
] as const;

export function SettingsPage() {
  const { tab = 'profile' } = useParams();
  const { manageMembers, loading } = usePermissions();
  const visible = TABS.filter((t) => !t.admin || manageMembers);
  if (!loading && !visible.some((t) => t.id === tab)) return <Navigate to="/settings/profile" replace />;

  return (
    <div className="page">
      <header className="page-header">
        <h1>Settings</h1>
      </header>
      <nav className="tabs" aria-label="Settings">
        {visible.map((t) => (
          <NavLink key={t.id} to={`/settings/${t.id}`} className="tab">
            {t.label}
          </NavLink>
        ))}
      </nav>
      <div className="tab-panel">
        {loading && <Loading />}
        {!loading && tab === 'profile' && <ProfileSettings />}
        {!loading && tab === 'keys' && <ApiKeysSettings />}
        {!loading && tab === 'providers' && manageMembers && <ProvidersSettings />}
        {!loading && tab === 'members' && manageMembers && <MembersSettings />}
        {!loading && tab === 'usage' && (
          <Suspense fallback={<Loading />}>
            <UsageSettings />
          </Suspense>
        )}
      </div>
    </div>
  );
}
