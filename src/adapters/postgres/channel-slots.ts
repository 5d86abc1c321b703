import type { ChannelSlots } from '../../ports/channel-slots';
import type { PgContext } from './context';
import { inTransaction, rows } from './database';

/** Advisory lock class for one channel's slot count ("slot" in ASCII); the second key is the channel id's hash. */
const SLOT_LOCK = 0x736c6f74;

/**
 * Channel slots shared by every node: one row per taken slot, held by one attempt of a task (`holder` the task id,
 * `attempt` its number: ports/channel-slots.ts), leased to its node on the database clock and renewed by that node's
 * dispatch heartbeat (PgDispatchQueue). Taking a slot counts the live rows under a per-channel
 * advisory lock, so two nodes can never both take the last one; rows whose lease lapsed (a dead node) do not count,
 * except while their task still has upstream work on that channel (its checkpoint says a submission or an upstream
 * task there; a row left behind on a channel the task has since left does not count): that
 * task keeps running at Tencent, and the node that takes it over adopts the same row. Before, its slot was free
 * for another task as soon as the dead node's lease lapsed, and the adoption then put the channel one over its
 * max_concurrency.
 */
const STILL_HELD = `(lease_until >= now() OR EXISTS (
  SELECT 1 FROM tasks t WHERE t.id = channel_slots.holder AND t.state IN ('queued', 'running')
    AND t.checkpoint IS NOT NULL AND t.checkpoint->>'phase' IS DISTINCT FROM 'idle'
    AND t.checkpoint->>'channelId' = channel_slots.channel_id))`;

export function postgresChannelSlots({ pool, nodeId, leaseMs }: PgContext): ChannelSlots {
  return {
    acquire: (channelId, { taskId, attempt }, limit) =>
      inTransaction(pool, async (c) => {
        await c.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [SLOT_LOCK, channelId]);
        await c.query(`DELETE FROM channel_slots WHERE channel_id = $1 AND NOT ${STILL_HELD}`, [channelId]);
        // The task's row here, if it has one, becomes this attempt's (an adoption, or a retry on the same channel):
        // one slot per task, never counted twice. Not from a later attempt: a superseded run asking now must not
        // take back the row its successor holds, whose release would then be the old run's to make.
        const mine = await c.query(
          `UPDATE channel_slots SET node_id = $3, lease_until = now() + $4 * interval '1 millisecond', attempt = $5
           WHERE channel_id = $1 AND holder = $2 AND attempt <= $5`,
          [channelId, taskId, nodeId, leaseMs, attempt],
        );
        if (mine.rowCount === 1) return true;
        const { taken, heldByLater } = (await rows<{ taken: number; heldByLater: number }>(
          c,
          'SELECT count(*) AS taken, count(*) FILTER (WHERE holder = $2) AS "heldByLater" FROM channel_slots WHERE channel_id = $1',
          [channelId, taskId],
        ))[0]!;
        if (heldByLater > 0 || taken >= limit) return false;
        await c.query(
          `INSERT INTO channel_slots (channel_id, holder, attempt, node_id, lease_until)
           VALUES ($1, $2, $3, $4, now() + $5 * interval '1 millisecond')`,
          [channelId, taskId, attempt, nodeId, leaseMs],
        );
        return true;
      }),
    async release(channelId, { taskId, attempt }) {
      // Only the row this attempt took here. A later attempt that took the task over holds the same row (adopted, or
      // taken afresh): on another node after a lapse, or on this one when its dispatcher claimed the task again, and
      // the superseded run must not give that slot away when it ends. (The node is checked as well; since every
      // claim has a number of its own, the attempt alone tells the runs apart.)
      await pool.query('DELETE FROM channel_slots WHERE channel_id = $1 AND holder = $2 AND attempt = $3 AND node_id = $4', [
        channelId,
        taskId,
        attempt,
        nodeId,
      ]);
    },
    async settled(taskId, state) {
      // A cancelled task's upstream work is over (aborted there, or never sent), and nothing adopts its slot: freed
      // now, whichever node's row it is. The node that ran it may have handed it over, stopped by a cancel another
      // node answered, and the channel was then one slot short until the lease lapsed. Any other ending (an
      // operator's force-fail, whose upstream task may go on) leaves the row to lapse with its lease (STILL_HELD):
      // no query for the tasks that end every second.
      if (state !== 'cancelled') return false;
      const freed = await pool.query('DELETE FROM channel_slots WHERE holder = $1', [taskId]);
      return (freed.rowCount ?? 0) > 0;
    },
    async inUse() {
      const found = await rows<{ channel_id: string; n: number }>(
        pool,
        `SELECT channel_id, count(*) AS n FROM channel_slots WHERE ${STILL_HELD} GROUP BY channel_id`,
      );
      return Object.fromEntries(found.map((r) => [r.channel_id, r.n]));
    },
  };
}
