import '@testing-library/jest-dom/vitest';
import { cleanup, configure } from '@testing-library/react';
import { afterEach } from 'vitest';
import { useAuth } from '../state/auth';
import { useUi } from '../state/ui';

// Pages are lazy-loaded: their first import can take a while on a busy machine.
configure({ asyncUtilTimeout: 5000 });

afterEach(() => {
  cleanup();
  useAuth.setState({ tokens: null, endedReason: null, lastTenant: null });
  useUi.setState({ lastAgent: null, navOpen: false });
  localStorage.clear();
  sessionStorage.clear();
});
