import { Worker } from 'node:worker_threads';
import { deserializeError, type FromWriter, type ToWriter, type WriterCall } from './protocol';

/**
 * The main thread's side of a worker thread that serves method calls (serve-calls.ts): the SQLite writer
 * (sqlite/writer-thread.ts), the file writer (fs/file-writer-thread.ts). Work that would otherwise stop the event
 * loop (better-sqlite3's synchronous statements and COMMITs; a file's mkdir, write and rename) runs on the thread,
 * and a call settles with the thread's answer. Calls go over in messages of up to POST_AFTER calls: the rest of a
 * turn's calls follow at `setImmediate`.
 *
 * An idle thread does not keep the process alive; one with calls in flight does. `close()` waits for every call
 * already made. If the thread dies, every call in flight and every later one fails with "the <label> thread exited".
 */
/**
 * A message goes out as soon as it holds this many calls. The requests of a burst reach their handlers one after
 * another in the same turn; with one message per turn the thread sat idle until the last handler had run, then
 * the main thread sat idle while the thread committed them all, and neither ever overlapped the other (a
 * profile of the submit benchmark: both threads half idle, 70% of the machine unused). Small messages let the
 * thread start on the first calls while the later ones are still being made; a few calls per message keep the
 * cost of posting (a structured clone and a wake-up each) small.
 */
export const POST_AFTER = 4;

export class ThreadCalls {
  private readonly worker: Worker;
  private readonly pending = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>();
  private outgoing: WriterCall[] = [];
  /** A `setImmediate` will post what is in `outgoing`. */
  private postScheduled = false;
  private nextId = 1;
  /** Set once the thread has failed or exited: every call from then on fails with it. */
  private stopped: Error | undefined;
  private readonly exited: Promise<void>;
  /** Resolves close()'s wait once the last pending call has been answered. */
  private onIdle: (() => void) | undefined;
  private closing: Promise<void> | undefined;

  /**
   * `entry`: the thread's module (a .ts file, loaded through boot.mjs); `data`: its `workerData` besides that.
   * `onUnexpectedExit`: called once if the thread ends before `close()` asked it to (a crash): the owner decides
   * what a process without this thread should do (the server exits so that its supervisor restarts it).
   */
  constructor(
    entry: URL,
    data: Record<string, unknown>,
    private readonly label: string,
    private readonly onUnexpectedExit?: (error: Error) => void,
  ) {
    this.worker = new Worker(new URL('./boot.mjs', import.meta.url), { workerData: { ...data, entry: entry.href } });
    this.worker.unref();
    this.worker.on('message', (message: FromWriter) => {
      if (message.type !== 'replies') return;
      for (const r of message.replies) {
        const waiter = this.pending.get(r.id);
        if (!waiter) continue;
        this.pending.delete(r.id);
        if (r.ok) waiter.resolve(r.value);
        else waiter.reject(deserializeError(r.error));
      }
      this.checkIdle();
    });
    this.worker.on('error', (error) => this.fail(error));
    // A message the thread sent that cannot be read here (out of memory while copying it): its calls would never
    // be answered. End the thread; its exit fails everything pending.
    this.worker.on('messageerror', (error) => {
      this.fail(error);
      void this.worker.terminate();
    });
    this.exited = new Promise((resolve) =>
      this.worker.once('exit', (code) => {
        const error = new Error(`the ${this.label} thread exited (code ${code})`);
        const unexpected = this.closing === undefined;
        this.fail(error);
        if (unexpected) this.onUnexpectedExit?.(this.stopped ?? error);
        resolve();
      }),
    );
  }

  /** Whether calls can still be made (for /readyz). */
  get alive(): boolean {
    return this.stopped === undefined;
  }

  call(target: string, method: string, args: readonly unknown[]): Promise<unknown> {
    if (this.stopped) return Promise.reject(this.stopped);
    return new Promise((resolve, reject) => {
      const id = this.nextId++;
      if (this.pending.size === 0) this.worker.ref(); // a write in flight keeps the process alive
      this.pending.set(id, { resolve, reject });
      this.outgoing.push({ id, target, method, args });
      if (this.outgoing.length >= POST_AFTER) this.post();
      else if (!this.postScheduled) {
        this.postScheduled = true;
        setImmediate(() => {
          this.postScheduled = false;
          this.post();
        });
      }
    });
  }

  /**
   * Waits for every call made so far to be answered, including calls made while it waits (a caller answered during
   * the wait may make more), then lets the thread close what it holds and end. A call made after that is refused at
   * once: it never reaches the thread, so it can never be run and then reported lost.
   */
  close(): Promise<void> {
    this.closing ??= this.closeOnce();
    return this.closing;
  }

  private async closeOnce(): Promise<void> {
    while (this.pending.size > 0 && !this.stopped) {
      this.post();
      await new Promise<void>((resolve) => (this.onIdle = resolve));
    }
    if (!this.stopped) {
      // Nothing is pending, and nothing more is accepted, in the same synchronous step as the close message.
      this.stopped = new Error(`the ${this.label} thread is closed`);
      this.worker.ref(); // until it has exited
      this.send({ type: 'close' });
    }
    await this.exited;
  }

  private checkIdle(): void {
    if (this.pending.size > 0) return;
    this.worker.unref(); // an idle writer does not keep the process alive
    const idle = this.onIdle;
    this.onIdle = undefined;
    idle?.();
  }

  private post(): void {
    if (this.outgoing.length === 0) return;
    const calls = this.outgoing;
    this.outgoing = [];
    this.send({ type: 'calls', calls });
  }

  private send(message: ToWriter): void {
    try {
      this.worker.postMessage(message);
    } catch (error) {
      if (message.type !== 'calls') throw error;
      // An argument that cannot be cloned (a function, say) fails its own call only, not its neighbours.
      if (message.calls.length > 1) for (const call of message.calls) this.send({ type: 'calls', calls: [call] });
      else for (const call of message.calls) this.settleWithError(call.id, error as Error);
    }
  }

  private settleWithError(id: number, error: Error): void {
    const waiter = this.pending.get(id);
    this.pending.delete(id);
    waiter?.reject(error);
    this.checkIdle();
  }

  private fail(error: Error): void {
    this.stopped ??= error;
    this.outgoing = [];
    for (const id of [...this.pending.keys()]) this.settleWithError(id, this.stopped);
    this.checkIdle();
  }
}
