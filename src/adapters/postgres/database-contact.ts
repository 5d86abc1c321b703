/**
 * Whether this node has heard from the database steadily for long enough that a lapsed lease means a dead node.
 *
 * A lease lapses when its node did not renew it for a whole lease. That says the node is dead or cut off only if the
 * database was answering meanwhile. When the database itself stalls for longer than a lease (a failover, a frozen
 * disk or VM), every node's leases lapse at once, and the first reaper to run when it answers again would hand back
 * every healthy run: each is superseded, run again, and loses an attempt (one on its last attempt is then failed by
 * the crash-loop rule). A node cannot see another's view, but it can see its own: if it too went more than half a
 * lease without an answer (no stall that lapses a lease is shorter than two thirds of one), it waits a whole lease
 * before taking anything, in which the living renew (three heartbeats) and only the dead stay lapsed.
 */
export class DatabaseContact {
  private lastAnswerAt: number | undefined;
  private steadySince: number | undefined;
  private lastGapMs = 0;

  constructor(
    private readonly leaseMs: number,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** A renewal has just been answered by the database. */
  answered(): void {
    const now = this.now();
    if (this.lastAnswerAt === undefined || now - this.lastAnswerAt > this.leaseMs / 2) {
      this.lastGapMs = this.lastAnswerAt === undefined ? 0 : now - this.lastAnswerAt;
      this.steadySince = now;
    }
    this.lastAnswerAt = now;
  }

  /**
   * The database has answered this node without a gap of half a lease for at least a whole lease, the time since its
   * last answer included: a gap still under way (a stall not yet over) is a gap.
   */
  steady(): boolean {
    if (this.steadySince === undefined || this.lastAnswerAt === undefined) return false;
    const now = this.now();
    return now - this.lastAnswerAt <= this.leaseMs / 2 && now - this.steadySince >= this.leaseMs;
  }

  /** How long the gap was that last restarted the count (0: none yet, only the first answer); for the log. */
  get gapMs(): number {
    return this.lastGapMs;
  }
}
