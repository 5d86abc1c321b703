import type { PaceRule, SubmissionPace } from '../../ports/submission-pace';
import { sleepUntilTurn, type TurnWait } from '../in-process-pace';
import type { PgContext } from './context';

/** Starts older than this are swept by `prune` (the windows are seconds; a key no longer used leaves its last few). */
const FORGET_AFTER_MS = 60_000;

/**
 * Submission turns shared by every node (ports/submission-pace.ts): `aigc_take_turn` (migrations.ts) reserves the
 * caller's start under a per-key advisory lock, on the database's clock, and answers how long to wait for it; the
 * wait itself is slept here. One round trip per submission, at most the upstream's rate of them (20 a second per
 * Tencent account). Before, each node paced itself only: N nodes on one account sent up to N times its rate, and
 * the operator had to divide `AIGC_RELAY_TENCENT_SUBMITS_PER_SECOND` by N to keep under it.
 *
 * On the plain pool, not the relaxed one: that one's 3 connections carry the claims, which must not wait behind
 * submissions.
 */
export function postgresSubmissionPace(
  ctx: PgContext,
  rule: PaceRule,
  options: {
    readonly wait?: TurnWait;
    /** Epoch ms for each take, instead of the database's clock (tests of the window arithmetic). */
    readonly now?: () => number;
  } = {},
): SubmissionPace {
  const wait = options.wait ?? sleepUntilTurn;
  return {
    async take(key, signal) {
      signal?.throwIfAborted();
      const { rows } = await ctx.pool.query<{ wait: string }>('SELECT aigc_take_turn($1, $2, $3, $4) AS wait', [
        key,
        rule.limit,
        rule.windowMs,
        options.now?.() ?? null,
      ]);
      const ms = Number(rows[0]!.wait);
      if (ms > 0) await wait(ms, signal);
    },
    prune() {
      // Best effort: the next prune tries again, and a key's own takes drop its old starts anyway.
      void ctx.pool
        .query('DELETE FROM upstream_turns WHERE at_ms < floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint - $1', [FORGET_AFTER_MS])
        .catch(() => undefined);
    },
  };
}
