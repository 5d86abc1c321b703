import { RATE_WINDOW_MS, type RateDecision, type RequestRates } from '../../ports/request-rates';
import type { PgContext } from './context';
import { pgCode } from './database';

/** A request of a key that sent nothing since is forgotten by a sweep this often (in calls), at most this many rows at a time. */
const SWEEP_EVERY = 1024;
const SWEEP_ROWS = 1000;

/** The database's time in epoch milliseconds, in SQL (the statement's start: stable, so `at <=` it can use the index). */
const DB_NOW_MS = 'floor(extract(epoch FROM now()) * 1000)::bigint';

/**
 * The request-rate log in the shared database (ports/request-rates.ts): every node counts a key's requests in the
 * same log, so `rpm` holds across nodes. One round trip per request of a key that has an `rpm` (keys without one
 * never come here): `aigc_take_rate` (migrations.ts) drops the key's requests that left the window, reads the
 * key's count (kept beside the log, so a take costs the same whatever the rpm) and adds this one, under a per-key
 * advisory lock.
 *
 * Times are the database's clock, as for leases and channel slots: the nodes' clocks may disagree, and a node
 * ahead by d then counted the others' requests for the window minus d (or not at all), the others its own for the
 * window plus d, with Retry-Afters beyond the window. The `now` a caller passes is ignored unless `clock` is
 * 'caller' (tests of the window arithmetic with explicit times).
 */
export function postgresRequestRates(ctx: PgContext, windowMs = RATE_WINDOW_MS, clock: 'database' | 'caller' = 'database'): RequestRates {
  let calls = 0;
  // Each take drops its own key's old requests; a key that stopped sending keeps up to `limit` rows until this.
  // The counts (request_rate_counts) go down with the rows, in the same statement.
  const sweepSql = (cutoff: string) =>
    `WITH gone AS (
       DELETE FROM request_rates WHERE ctid IN (SELECT ctid FROM request_rates WHERE at <= ${cutoff} LIMIT $2) RETURNING key_id),
     per_key AS (SELECT key_id, count(*)::integer AS n FROM gone GROUP BY key_id)
     UPDATE request_rate_counts c SET n = c.n - per_key.n FROM per_key WHERE c.key_id = per_key.key_id`;
  const sweep = (now: number) =>
    (clock === 'caller'
      ? ctx.pool.query(sweepSql('$1::bigint'), [now - windowMs, SWEEP_ROWS])
      : ctx.pool.query(sweepSql(`${DB_NOW_MS} - $1::bigint`), [windowMs, SWEEP_ROWS])
    ).catch(() => undefined); // best effort: the next sweep tries again
  return {
    async take(keyId, limit, now): Promise<RateDecision> {
      if (++calls % SWEEP_EVERY === 0) void sweep(now);
      const params = [keyId, limit, clock === 'caller' ? now : null, windowMs];
      const run = () => ctx.pool.query<{ wait: number }>('SELECT aigc_take_rate($1, $2, $3, $4) AS wait', params);
      // The sweep deletes rows of any key without the key's lock, so it and a take can each hold rows the other
      // wants: PostgreSQL then aborts one of them as a deadlock. The take is worth one more try (the sweep's own
      // failure is simply the next sweep's work), rather than a submit answered 500.
      const { rows } = await run().catch((err: unknown) => {
        if (pgCode(err) !== '40P01') throw err;
        return run();
      });
      const wait = Number(rows[0]!.wait);
      return wait === 0 ? { ok: true } : { ok: false, retryAfterMs: wait };
    },
  };
}
