import { setTimeout as sleep } from 'node:timers/promises';
import { permanentError } from '../../ports/provider';
import type { Clock } from '../../ports/clock';
import type { Vod, VodApi } from './client';
import { classify, describe, isDuplicateSession, toProviderError, UNREACHABLE } from './errors';

/**
 * Resolving an ambiguous submission (no answer to CreateAigcImageTask, or a crash while it was in flight) without
 * guessing. The hold stays in place throughout.
 *
 * 1. DescribeTasks over the submission's time window, looking for SessionId = our task id. Found: that is the task.
 * 2. A completion event carrying the SessionId answers the same question (the follower passes it on).
 * 3. Not listed after a few lookups (the listing may lag): submit again with the same SessionId on the same
 *    channel. Tencent refuses a SessionId it has seen in 3 days, so this either creates the one and only task (the
 *    first request never arrived) or is refused, which proves the task exists: keep looking it up.
 *
 * It ends with a TaskId, a refusal that is the request's own fault, the query window passing, or (undefined) the
 * conclusion that nothing exists: Tencent may hold a SessionId against a request it refused (session.ts), so when
 * the lost answer was a refusal every resubmission is refused as a duplicate of a task that is not there. Once
 * resubmissions have been refused so for `listingLagMs` while every listing read in between showed nothing, the
 * SessionId is taken as spent by a refusal and the caller goes on under a new one, instead of holding the task
 * (and the client's credits, with no way to cancel) for the whole 3-day window.
 *
 * A submission answered with a server error (InternalError) is the milder case: Tencent answered, but may have
 * made the task before failing. `lookUpAfterServerError` looks for it the same way, and when the listing has not
 * shown it after one lookup more than that it reports it absent, so the caller can try another channel under a new
 * SessionId, instead of resubmitting on a channel that fails (maybe for hours) with the task held all along. A
 * lookup that fails counts as a pass too (see below). It is never resubmitted on that channel.
 */
export interface ReconcileOptions {
  /** Pause after each round; the last value repeats. */
  readonly delaysMs: readonly number[];
  readonly lookupsBeforeResubmit: number;
  readonly callTimeoutMs: number;
  readonly createTimeoutMs: number;
  readonly windowMs: number;
  /** Margin around the submission time for the CreateTime filter (clock skew). */
  readonly slackMs: number;
  /**
   * How long the listing may lag behind a task that exists: resubmissions refused as duplicates for this long, with
   * the listing read empty in between, mean the SessionId was spent by a refused request (see above).
   */
  readonly listingLagMs: number;
}

export interface ReconcileRequest {
  /** The SessionId of the submission in doubt (session.ts). */
  readonly sessionId: string;
  readonly submittedAt: number;
  readonly api: VodApi;
  readonly subAppId: number;
  /** The same request as the first submission (same SessionId). */
  readonly request: () => Vod.CreateAigcImageTaskRequest;
  /** Completion events of this SessionId on this channel. */
  readonly watchSession: (sessionId: string, onFound: (upstreamTaskId: string) => void) => () => void;
  readonly log: (message: string) => void;
  readonly clock: Clock;
  readonly options: ReconcileOptions;
  readonly signal: AbortSignal;
}

const iso = (ms: number): string => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
/**
 * A VOD app lists every task it ran (transcodes too), so a busy one can hold thousands in the window: the pages are
 * read oldest first (our task comes after at most `slackMs` of others) and up to 100,000 rows, not the first 5,000.
 */
const MAX_PAGES = 1000;

export async function findBySessionId(
  api: VodApi,
  subAppId: number,
  sessionId: string,
  window: { from: number; to: number },
  o: { timeoutMs: number; signal: AbortSignal },
): Promise<Vod.TaskSimpleInfo | undefined> {
  let scrollToken: string | undefined;
  for (let page = 0; page < MAX_PAGES; page++) {
    const res = await api.describeTasks(
      {
        SubAppId: subAppId,
        CreateTime: { After: iso(window.from), Before: iso(window.to) },
        Sort: { Field: 'CreateTime', Order: 'Asc' },
        Limit: 100,
        ...(scrollToken ? { ScrollToken: scrollToken } : {}),
      },
      o,
    );
    const hit = res.TaskSet?.find((t) => t.SessionId === sessionId);
    if (hit) return hit;
    scrollToken = res.ScrollToken || undefined;
    if (!scrollToken) return undefined;
  }
  return undefined;
}

/**
 * One look at the listing for a submission in doubt (a client's cancel asks it): the upstream task's id, or undefined
 * when it is not listed, which does not tell that none was made. Bounded by one call's timeout in all.
 */
export async function lookUpSubmission(r: Pick<ReconcileRequest, 'api' | 'subAppId' | 'sessionId' | 'submittedAt' | 'options'>): Promise<string | undefined> {
  const { options } = r;
  const window = { from: r.submittedAt - options.slackMs, to: r.submittedAt + options.createTimeoutMs + options.slackMs };
  const signal = AbortSignal.timeout(options.callTimeoutMs);
  return (await findBySessionId(r.api, r.subAppId, r.sessionId, window, { timeoutMs: options.callTimeoutMs, signal }))?.TaskId || undefined;
}

/** The upstream task of a submission in doubt, or undefined when it is known that none was made (see above). */
export function reconcile(r: ReconcileRequest): Promise<string | undefined> {
  return resolveSubmission(r, false);
}

/** The upstream task of a submission answered InternalError, or undefined when the listing shows none. */
export function lookUpAfterServerError(r: ReconcileRequest): Promise<string | undefined> {
  return resolveSubmission(r, true);
}

async function resolveSubmission(r: ReconcileRequest, absentIsAnAnswer: boolean): Promise<string | undefined> {
  // A pass is one lookup (or a failed try at one); `lookups` counts those that read the listing.
  const { options, signal } = r;
  let unwatch = (): void => undefined;
  const fromEvent = new Promise<string>((resolve) => {
    unwatch = r.watchSession(r.sessionId, resolve);
  });
  try {
    let lookups = 0;
    // The task can only have been created while a submission of ours was in flight: the window ends there (plus
    // the clock-skew slack), instead of growing with every round towards now and past other tasks by the thousand.
    let lastSubmittedAt = r.submittedAt;
    // When a resubmission was first refused as a duplicate while the listing showed nothing.
    let firstDuplicateAt: number | undefined;
    for (let pass = 0; ; pass++) {
      signal.throwIfAborted();
      const now = r.clock.now();
      if (now - r.submittedAt > options.windowMs) {
        throw permanentError(UNREACHABLE, 'Tencent VOD: the submission could not be confirmed within the query window; the hold is released');
      }
      try {
        const window = { from: r.submittedAt - options.slackMs, to: Math.min(now, lastSubmittedAt + options.createTimeoutMs) + options.slackMs };
        const hit = await findBySessionId(r.api, r.subAppId, r.sessionId, window, { timeoutMs: options.callTimeoutMs, signal });
        if (hit?.TaskId) {
          r.log(`Reconciled: DescribeTasks lists upstream task ${hit.TaskId} for this SessionId.`);
          return hit.TaskId;
        }
        lookups++;
      } catch (err) {
        signal.throwIfAborted();
        r.log(`DescribeTasks failed (${describe(classify(err, false))}); will look again.`);
      }

      // After one pass more than before a resubmission (the listing may lag the answer), absence is acted on. A pass
      // whose listing failed counts too: the channel answered InternalError to the submission and cannot list its
      // tasks either, and holding the task on it until the query window ends (days) is worse than the small chance
      // that the failed submission did make a task there.
      if (absentIsAnAnswer && pass >= options.lookupsBeforeResubmit) {
        r.log(
          lookups > 0
            ? `DescribeTasks lists no task for this SessionId after ${lookups} lookups: the submission made nothing upstream.`
            : `DescribeTasks could not be read after ${pass + 1} tries: taken as nothing made upstream.`,
        );
        return undefined;
      }
      if (!absentIsAnAnswer && lookups >= options.lookupsBeforeResubmit) {
        lookups = 0;
        try {
          lastSubmittedAt = r.clock.now();
          const res = await r.api.createAigcImageTask(r.request(), { timeoutMs: options.createTimeoutMs, signal });
          if (res.TaskId) {
            r.log(`Reconciled: the first submission never arrived; resubmitted with the same SessionId as upstream task ${res.TaskId}.`);
            return res.TaskId;
          }
        } catch (err) {
          signal.throwIfAborted();
          const f = classify(err, true);
          if (isDuplicateSession(f)) {
            const now = r.clock.now();
            firstDuplicateAt ??= now;
            if (now - firstDuplicateAt >= options.listingLagMs) {
              r.log(
                `Tencent refuses this SessionId as used, yet has listed no task for it for ${Math.round((now - firstDuplicateAt) / 1000)} s: ` +
                  'it was spent by a request Tencent refused. Nothing was made upstream.',
              );
              return undefined;
            }
            r.log('Tencent already has a task with this SessionId; looking it up again.');
          } else if (f.kind === 'task') throw toProviderError(f, false);
          else r.log(`Resubmission with the same SessionId failed (${f.code}); will look again.`);
        }
      }

      const delay = options.delaysMs[Math.min(pass, options.delaysMs.length - 1)] ?? 1000;
      const found = await Promise.race([sleep(delay, undefined, { signal }).then(() => undefined), fromEvent]);
      if (found) {
        r.log(`Reconciled: a completion event names upstream task ${found} for this SessionId.`);
        return found;
      }
    }
  } finally {
    unwatch();
  }
}
