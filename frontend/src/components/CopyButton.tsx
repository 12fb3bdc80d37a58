import { useEffect, useState } from 'react';
import { copyText } from './clipboard';

interface Props {
  /** The text to copy, or a function that reads it when clicked. */
  text: string | (() => string);
  label?: string;
  className?: string;
}

export function CopyButton({ text, label = 'Copy', className }: Props) {
  const [state, setState] = useState<'idle' | 'copied' | 'failed'>('idle');
  useEffect(() => {
    if (state === 'idle') return;
    const timer = window.setTimeout(() => setState('idle'), 2000);
    return () => window.clearTimeout(timer);
  }, [state]);
  return (
    <button
      type="button"
      className={`btn btn-small btn-ghost ${className ?? ''}`}
      onClick={async () => {
        const ok = await copyText(typeof text === 'function' ? text() : text);
        setState(ok ? 'copied' : 'failed');
      }}
      aria-live="polite"
    >
      {state === 'copied' ? 'Copied' : state === 'failed' ? 'Copy failed' : label}
    </button>
  );
}
