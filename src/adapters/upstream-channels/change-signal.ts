/**
 * "Capacity may have changed": listeners hear every change (the engine wakes its lanes), and a waiter awaits only the
 * next one (a submission waiting for a slot), with a timeout and its run's abort signal.
 */
export class ChangeSignal {
  private readonly listeners = new Set<() => void>();
  private readonly waiters = new Set<() => void>();

  /** Called on every change until the returned function is called. */
  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  changed(): void {
    const waiters = [...this.waiters];
    this.waiters.clear();
    for (const wake of waiters) wake();
    this.tellListeners();
  }

  /** Tells the listeners alone: room may have grown for others, but nothing the waiters wait for was freed. */
  tellListeners(): void {
    for (const listener of this.listeners) listener();
  }

  /** Resolves at the next change, or after `timeoutMs`; rejects with the signal's reason if it aborts first. */
  next(signal: AbortSignal, timeoutMs?: number): Promise<void> {
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const onAbort = () => {
        this.waiters.delete(wake);
        clearTimeout(timer);
        reject(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
      };
      const wake = () => {
        this.waiters.delete(wake);
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        resolve();
      };
      this.waiters.add(wake);
      signal.addEventListener('abort', onAbort, { once: true });
      if (timeoutMs !== undefined) timer = setTimeout(wake, timeoutMs);
    });
  }

  clear(): void {
    this.listeners.clear();
  }
}
