import { Suspense } from 'react';
import { NavLink, Outlet } from 'react-router';
import { Loading } from './Loading';
import { useLogout } from './useLogout';
import { useUi } from '../state/ui';
import { usePermissions } from '../state/usePermissions';

const ROLE_LABEL = { admin: 'Admin', user: 'User', viewer: 'Viewer' } as const;

export function Layout() {
  const { me, role } = usePermissions();
  const navOpen = useUi((state) => state.navOpen);
  const setNavOpen = useUi((state) => state.setNavOpen);
  const logout = useLogout();
  const close = () => setNavOpen(false);

  return (
    <div className={`app-shell ${navOpen ? 'nav-open' : ''}`}>
      <header className="topbar">
        <button
          type="button"
          className="btn btn-ghost nav-toggle"
          aria-expanded={navOpen}
          aria-controls="main-nav"
          onClick={() => setNavOpen(!navOpen)}
        >
          Menu
        </button>
        <span className="brand">
          <span className="brand-mark" aria-hidden="true">A</span> Agent PaaS
        </span>
      </header>
      <aside className="sidebar" id="main-nav">
        <div className="brand brand-side">
          <span className="brand-mark" aria-hidden="true">A</span> Agent PaaS
        </div>
        <nav aria-label="Main">
          <NavLink to="/chat" onClick={close} className="nav-link">
            Chat
          </NavLink>
          <NavLink to="/sessions" onClick={close} className="nav-link">
            Sessions
          </NavLink>
          <NavLink to="/agents" onClick={close} className="nav-link">
            Agents
          </NavLink>
          <NavLink to="/settings" onClick={close} className="nav-link">
            Settings
          </NavLink>
        </nav>
        <div className="sidebar-footer">
          {me && (
            <div className="whoami">
              <div className="whoami-name">{me.user.display_name}</div>
              <div className="whoami-meta">
                {me.tenant.display_name} · <span className={`role-badge role-${role}`}>{role ? ROLE_LABEL[role] : ''}</span>
              </div>
            </div>
          )}
          <button type="button" className="btn btn-ghost btn-block" onClick={() => void logout()}>
            Log out
          </button>
        </div>
      </aside>
      {navOpen && <div className="scrim" onClick={close} aria-hidden="true" />}
      <main className="content">
        <Suspense fallback={<Loading />}>
          <Outlet />
        </Suspense>
      </main>
    </div>
  );
}
