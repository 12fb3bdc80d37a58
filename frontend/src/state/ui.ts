import { create } from 'zustand';
import { createJSONStorage, persist } from 'zustand/middleware';

interface UiState {
  /** The agent picked last for a new chat. */
  lastAgent: string | null;
  /** The mobile navigation drawer. */
  navOpen: boolean;
  setLastAgent: (agent: string | null) => void;
  setNavOpen: (open: boolean) => void;
}

export const useUi = create<UiState>()(
  persist(
    (set) => ({
      lastAgent: null,
      navOpen: false,
      setLastAgent: (lastAgent) => set({ lastAgent }),
      setNavOpen: (navOpen) => set({ navOpen }),
    }),
    {
      name: 'paas.ui',
      storage: createJSONStorage(() => localStorage),
      partialize: (state) => ({ lastAgent: state.lastAgent }),
    },
  ),
);
