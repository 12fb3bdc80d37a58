import { useMe } from '../api/queries';
import { permissionsFor } from './permissions';

export function usePermissions() {
  const me = useMe();
  return { ...permissionsFor(me.data?.role), role: me.data?.role, me: me.data, loading: me.isLoading };
}
