import dns from 'node:dns';
import type { HostResolver, ResolvedAddress } from './outbound-guard';

/** One name → addresses question to the system, as `dns.promises.lookup` answers it. */
export type SystemLookup = (hostname: string) => Promise<readonly ResolvedAddress[]>;

/**
 * Lookups of client-chosen names (webhook hosts, URL inputs) that may run at once. `dns.lookup` (getaddrinfo, so the
 * hosts file and nsswitch apply) runs on libuv's thread pool, 4 threads unless UV_THREADPOOL_SIZE says otherwise,
 * and that pool also serves file reads and writes. A lookup cannot be cancelled: one whose caller gave up holds its
 * thread until the resolver's own timeouts end it. Without a bound, a client whose webhook names sit behind a slow
 * name server could hold every thread, and uploads and downloads would wait behind its lookups.
 */
export const SYSTEM_LOOKUPS_AT_ONCE = lookupsForPool(process.env.UV_THREADPOOL_SIZE);

/** Half the pool's threads, at least 1. The pool's size is read as libuv reads it: 4 when unset, else atoi, 0 → 1. */
export function lookupsForPool(uvThreadpoolSize: string | undefined): number {
  const asked = uvThreadpoolSize === undefined ? 4 : Number.parseInt(uvThreadpoolSize, 10);
  const threads = Number.isFinite(asked) && asked > 0 ? Math.min(asked, 1024) : 1;
  return Math.max(1, Math.floor(threads / 2));
}

const lookupAll: SystemLookup = async (hostname) => {
  const answers = await dns.promises.lookup(hostname, { all: true, verbatim: true });
  return answers.map((a) => ({ address: a.address, family: a.family === 6 ? 6 : 4 }));
};

interface Question {
  readonly hostname: string;
  /** Callers still waiting for it; at 0 before its turn it is dropped (they all gave up). */
  wanted: number;
  readonly answer: Promise<readonly ResolvedAddress[]>;
  start(): void;
  drop(): void;
}

/**
 * A resolver over the system's lookup that asks at most `atOnce` questions at a time, first come first served, and
 * asks each name once while a question about it is open (a thousand webhooks to one host are one lookup). A caller
 * that gives up (its signal aborts) leaves at once; a question no caller waits for any more is never asked.
 */
export function limitedSystemResolver(lookup: SystemLookup = lookupAll, atOnce = SYSTEM_LOOKUPS_AT_ONCE): HostResolver {
  const open = new Map<string, Question>();
  const waiting: Question[] = [];
  let running = 0;

  const next = (): void => {
    while (running < atOnce && waiting.length > 0) {
      const question = waiting.shift()!;
      if (question.wanted > 0) question.start();
      else question.drop();
    }
  };

  const ask = (hostname: string): Question => {
    let settle!: { resolve: (a: readonly ResolvedAddress[]) => void; reject: (e: unknown) => void };
    const answer = new Promise<readonly ResolvedAddress[]>((resolve, reject) => (settle = { resolve, reject }));
    const question: Question = {
      hostname,
      wanted: 0,
      answer,
      start() {
        running++;
        lookup(hostname)
          .then(settle.resolve, settle.reject)
          .finally(() => {
            running--;
            open.delete(hostname);
            next();
          });
      },
      drop() {
        open.delete(hostname);
        // Nobody listens any more; settled only so that nothing is left pending.
        answer.catch(() => undefined);
        settle.reject(new Error(`lookup of ${hostname} abandoned by every caller`));
      },
    };
    open.set(hostname, question);
    waiting.push(question);
    return question;
  };

  return (hostname, signal) => {
    signal?.throwIfAborted();
    const question = open.get(hostname) ?? ask(hostname);
    question.wanted++;
    // Asked after the caller joined it, so a question is never dropped before its first caller counts.
    next();
    if (!signal) return question.answer.finally(() => question.wanted--);
    return new Promise<readonly ResolvedAddress[]>((resolve, reject) => {
      let left = false;
      const leave = () => {
        left = true;
        question.wanted--;
        reject(signal.reason);
      };
      signal.addEventListener('abort', leave, { once: true });
      question.answer.then(
        (addresses) => !left && resolve(addresses),
        (error: unknown) => !left && reject(error),
      ).finally(() => {
        signal.removeEventListener('abort', leave);
        if (!left) question.wanted--;
      });
    });
  };
}

/** The process's resolver for client-chosen names: one bound for the whole process, as the thread pool is one. */
export const systemResolver: HostResolver = limitedSystemResolver();
