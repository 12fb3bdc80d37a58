import { useNavigate } from 'react-router';
import { useQueryClient } from '@tanstack/react-query';
import { publicApi } from '../api/client';
import { useAuth } from '../state/auth';

/** Ends the login session on the server and here, then shows the login page. */
export function useLogout() {
  const queryClient = useQueryClient();
  const navigate = useNavigate();
  return async () => {
    const refreshToken = useAuth.getState().tokens?.refreshToken;
    if (refreshToken) {
      try {
        await publicApi.POST('/api/v1/auth/logout', { body: { refresh_token: refreshToken } });
      } catch {
        // Logged out locally either way.
      }
    }
    // Navigate first (in the same render as the sign-out) so that the login page does not
    // remember this page as the one to return to.
    navigate('/login', { replace: true });
    useAuth.getState().signOut(null);
    sessionStorage.clear();
    queryClient.clear();
  };
}
