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
  /** Started or dropped: either way it has left every line for good, wherever it still sits in one. */
  settled: boolean;
  /** The owners whose lines hold it, so each later asker's line gets it once. */
  readonly inLinesOf: Set<string>;
  readonly answer: Promise<readonly ResolvedAddress[]>;
  /** Asked on `owner`'s turn: its running lookup counts against that owner, whoever asked first. */
  start(owner: string): void;
  drop(): void;
}

const NO_OWNER = '';

/** Lookups one owner may have running at once: half the bound, so no one owner can hold every thread. */
export function lookupsPerOwner(atOnce: number): number {
  return Math.max(1, Math.floor(atOnce / 2));
}

/**
 * A resolver over the system's lookup that asks at most `atOnce` questions at a time and asks each name once while
 * a question about it is open (a thousand webhooks to one host are one lookup). A caller that gives up (its signal
 * aborts) leaves at once; a question no caller waits for any more is never asked.
 *
 * Turns are shared among owners (the account a webhook or an input URL belongs to), not first come first served: a
 * lookup cannot be cancelled, so one account whose names sit behind a slow name server would otherwise hold every
 * running lookup and have its next ones queued ahead of everyone else's. Each owner waits in its own line, a free
 * turn goes to the owner with the fewest lookups running and then the one kept waiting longest, and one owner runs
 * at most `perOwner` lookups at once, so the others always have a thread. Callers that name no owner share one line,
 * with no such cap (the relay names an owner for every client-chosen name).
 *
 * A question not yet started stands in the line of every owner that asks it (once each), and whichever of those
 * owners' turns comes first starts it, counted against that owner: joining a name that an owner at its cap asked
 * first must not make the later asker wait behind that owner's lookups. Lines pass over questions already started or
 * dropped from another line.
 */
export function limitedSystemResolver(lookup: SystemLookup = lookupAll, atOnce = SYSTEM_LOOKUPS_AT_ONCE, perOwner = lookupsPerOwner(atOnce)): HostResolver {
  const open = new Map<string, Question>();
  /** Each owner's questions not yet started, in order. */
  const lines = new Map<string, Question[]>();
  const runningFor = new Map<string, number>();
  /** When each owner with questions open last had a turn (a count of turns), to serve the longest kept waiting. */
  const lastTurnOf = new Map<string, number>();
  let turns = 0;
  let running = 0;

  /**
   * The next question to ask: of the owners below `perOwner` with a question waiting, the one with the fewest
   * running, then the one whose last turn is longest ago (an owner new to the line first). Questions nobody wants
   * any more are dropped on the way.
   */
  const takeTurn = (): { question: Question; owner: string } | undefined => {
    let chosen: { owner: string; line: Question[]; running: number; lastTurn: number } | undefined;
    for (const [owner, line] of lines) {
      // Started or dropped from another owner's line, or wanted by nobody (dropped here, once).
      while (line.length > 0 && (line[0]!.settled || line[0]!.wanted === 0)) line.shift()!.drop();
      if (line.length === 0) {
        lines.delete(owner);
        if (!runningFor.has(owner)) lastTurnOf.delete(owner);
        continue;
      }
      const ownerRunning = runningFor.get(owner) ?? 0;
      if (owner !== NO_OWNER && ownerRunning >= perOwner) continue;
      const lastTurn = lastTurnOf.get(owner) ?? -1;
      if (!chosen || ownerRunning < chosen.running || (ownerRunning === chosen.running && lastTurn < chosen.lastTurn)) {
        chosen = { owner, line, running: ownerRunning, lastTurn };
      }
    }
    if (!chosen) return undefined;
    lastTurnOf.set(chosen.owner, turns++);
    const question = chosen.line.shift()!;
    if (chosen.line.length === 0) lines.delete(chosen.owner);
    return { question, owner: chosen.owner };
  };

  const next = (): void => {
    while (running < atOnce) {
      const turn = takeTurn();
      if (!turn) return;
      turn.question.start(turn.owner);
    }
  };

  /** `question` joins `owner`'s line, unless it stands there already. */
  const queue = (question: Question, owner: string): void => {
    if (question.inLinesOf.has(owner)) return;
    question.inLinesOf.add(owner);
    const line = lines.get(owner);
    if (line) line.push(question);
    else lines.set(owner, [question]);
  };

  /** Forgets `question` as the open one about its name, unless a newer question about that name has taken its place. */
  const close = (question: Question): void => {
    if (open.get(question.hostname) === question) open.delete(question.hostname);
  };

  /** A new question about `hostname`, open for every caller of that name until it is answered or dropped. */
  const ask = (hostname: string): Question => {
    let settle!: { resolve: (a: readonly ResolvedAddress[]) => void; reject: (e: unknown) => void };
    const answer = new Promise<readonly ResolvedAddress[]>((resolve, reject) => (settle = { resolve, reject }));
    const question: Question = {
      hostname,
      wanted: 0,
      settled: false,
      inLinesOf: new Set(),
      answer,
      start(owner) {
        question.settled = true;
        running++;
        runningFor.set(owner, (runningFor.get(owner) ?? 0) + 1);
        lookup(hostname)
          .then(settle.resolve, settle.reject)
          .finally(() => {
            running--;
            const left = runningFor.get(owner)! - 1;
            if (left > 0) runningFor.set(owner, left);
            else {
              runningFor.delete(owner);
              if (!lines.has(owner)) lastTurnOf.delete(owner);
            }
            close(question);
            next();
          });
      },
      drop() {
        // Reached again from another owner's line once started or dropped: nothing more to do.
        if (question.settled) return;
        question.settled = true;
        close(question);
        // Nobody listens any more; settled only so that nothing is left pending.
        answer.catch(() => undefined);
        settle.reject(new Error(`lookup of ${hostname} abandoned by every caller`));
      },
    };
    open.set(hostname, question);
    return question;
  };

  return (hostname, signal, owner = NO_OWNER) => {
    signal?.throwIfAborted();
    const question = open.get(hostname) ?? ask(hostname);
    // A question already running is simply shared; one still waiting waits in this caller's line too.
    if (!question.settled) queue(question, owner);
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
