import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import { secretsAt, signedHeaders } from '../app/webhook-signature';
import type { Clock } from '../ports/clock';
import type { DeliveryStep, NewWebhookAttempt, WebhookDelivery } from '../ports/delivery-store';
import type { Store, TaskRecord } from '../ports/store';
import { RESPONSE_EXCERPT_CHARS, WebhookRefused, type WebhookPost } from '../ports/webhook-post';
import { retryDelayMs, type RetryPolicy } from './retry';

/**
 * Backoff for webhook deliveries: the engine's exponential-with-jitter formula (retry.ts) on a webhook scale, and a
 * minimum age: a delivery is given up only after an attempt fails when its event is `maxAgeMs` old.
 */
export interface WebhookPolicy extends RetryPolicy {
  /** Keep trying for at least this long after the task finished. */
  readonly maxAgeMs: number;
  /** One attempt's limit, connection to last byte read. */
  readonly timeoutMs: number;
  /** Deliveries in flight at once, from this node. */
  readonly concurrency: number;
  /**
   * Deliveries in flight at once for one account (counted over every node's leases): a customer whose receiver
   * hangs holds at most this many slots, and the rest keep delivering every other account's events.
   */
  readonly perAccount: number;
}

/** 5 s, 10 s, 20 s … doubling to a 6 h ceiling (each delay jittered between half and all of it), for ≥ 24 h. */
export const DEFAULT_WEBHOOK_POLICY: WebhookPolicy = {
  baseDelayMs: 5_000,
  maxDelayMs: 6 * 3600_000,
  maxAgeMs: 24 * 3600_000,
  // A bound for the pathological case only: with the delays above, 24 h is reached in about 20 attempts.
  maxAttempts: 60,
  timeoutMs: 10_000,
  // A POST in flight costs a socket and a few KiB. 16 per account: a healthy receiver answering in 50 ms still
  // takes 320 events a second; it takes four accounts with hanging receivers to fill every slot.
  concurrency: 64,
  perAccount: 16,
};

/** Emitted as 'attempt' after each attempt is recorded (tests and metrics listen). */
export interface WebhookAttemptEvent {
  readonly delivery: WebhookDelivery;
  readonly attempt: NewWebhookAttempt;
  readonly step: DeliveryStep;
}

/**
 * The start of a text the receiver chose (its answer, or an error about it), as text every store can hold: U+0000
 * becomes U+FFFD (PostgreSQL refuses a NUL in text, and the attempt, with the delivery's next step, would then never
 * be recorded), and the cut never splits a surrogate pair.
 */
export function excerpt(text: string, maxChars = RESPONSE_EXCERPT_CHARS): string {
  let cut = text.length > maxChars ? text.slice(0, maxChars) : text;
  if (/[\uD800-\uDBFF]$/.test(cut)) cut = cut.slice(0, -1);
  return cut.replace(/\u0000/g, '\uFFFD');
}
/** Idle re-check, for rows written by another process (CLI, a second node). */
const IDLE_RECHECK_MS = 30_000;
/**
 * While some account is at its cap, a claim takes the store's fair path (a look at every account with pending rows:
 * tens of ms with thousands of them, and on SQLite inside the one write transaction every submit waits for). A
 * claim that came back short and took at least SLOW_CLAIM_MS is then not followed by another for this many times
 * as long as it took (at most MAX_CLAIM_SPACING_MS), so such claims take at most a fifth of the store's time.
 */
const BLOCKED_CLAIM_SPACING = 4;
const SLOW_CLAIM_MS = 5;
const MAX_CLAIM_SPACING_MS = 1_000;
/** A claimed row stays leased a little beyond the attempt's own timeout. */
const LEASE_MARGIN_MS = 30_000;

/**
 * The outcome of an attempt, as a rule: 2xx delivered, 410 gone (stop), a refused URL failed, else retry
 * until old enough.
 */
export function nextStep(
  policy: WebhookPolicy,
  delivery: Pick<WebhookDelivery, 'attempts' | 'createdAt'>,
  status: number | undefined,
  now: number,
  refused = false,
): DeliveryStep {
  if (status !== undefined && status >= 200 && status < 300) return { state: 'delivered' };
  if (status === 410) return { state: 'gone' };
  if (refused) return { state: 'failed' };
  const attempt = delivery.attempts + 1;
  if (now - delivery.createdAt >= policy.maxAgeMs || attempt >= policy.maxAttempts) return { state: 'failed' };
  return { state: 'pending', nextAttemptAt: now + retryDelayMs(policy, attempt) };
}

export interface WebhookDispatcherDeps {
  readonly store: Store;
  readonly clock: Clock;
  readonly policy: WebhookPolicy;
  readonly post: WebhookPost;
  /** The body a finished task's webhook carries (the result body of GET /requests/{id}). */
  readonly render: (task: TaskRecord) => string;
  /** True for a single node (the embedded store): whatever is leased at start was leased by this node's past life. */
  readonly releaseLeasesOnStart: boolean;
  readonly log: { info(obj: object, msg: string): void; warn(obj: object, msg: string): void; error(obj: object, msg: string): void };
}

/**
 * Delivers the webhook outbox. Rows are written by the store in the transaction that finishes a task, so this only
 * has to claim due rows, POST them signed, and record each attempt with its next step. Woken by the engine's
 * terminal events and by its own timer for the next due retry; it never scans on a fixed beat while work is due.
 */
export class WebhookDispatcher {
  readonly events = new EventEmitter();
  private started = false;
  private pumping = false;
  /** The pump now running, if any: stop() waits for it, so a claim it has in flight is not left behind. */
  private pumpRun: Promise<void> | undefined;
  private again = false;
  private timer: NodeJS.Timeout | undefined;
  /** When the armed timer fires (clock time); undefined when none is armed. */
  private timerAt: number | undefined;
  /** The earliest due time other nodes told of (`dueAt`) that the next schedule must not look past. */
  private heardDueAt: number | undefined;
  /** Attempts running, with how to abort each and the lease its claim took (handed back if stopping aborts it). */
  private readonly inFlight = new Map<Promise<void>, { readonly controller: AbortController; readonly id: string; readonly leaseUntil: number }>();
  /**
   * Set when a claim came back short: every row it could see due at that time and did not claim belongs to an
   * account at its cap. Until something changes that, only rows due after it can be claimed, so only those wake a
   * claim (a write transaction): otherwise every finished task, webhook or not, would claim nothing again. Cleared
   * when one of our attempts ends (a slot frees), when a task finished meanwhile has a pending delivery (its row
   * may be stamped before the claim and committed after it), on an operator's replay, and after IDLE_RECHECK_MS
   * (another node's attempt ending also frees room, and this node is not told).
   */
  private blockedAsOf: number | undefined;
  /** Tasks that finished while blocked: does any have a delivery the last claim could not see? */
  private readonly finishedWhileBlocked = new Set<string>();
  /** Attempts ended so far: one that ends while a claim runs makes that claim's "blocked" stale at once. */
  private attemptsEnded = 0;
  /** No claim starts before this (clock time); see BLOCKED_CLAIM_SPACING. */
  private claimNotBefore = 0;

  constructor(private readonly deps: WebhookDispatcherDeps) {
    this.events.setMaxListeners(0);
  }

  /**
   * Starts delivering. A single node first frees whatever its crash left leased, so those rows are due at once;
   * with several nodes a dead node's leases simply expire (attempt timeout + 30 s).
   */
  async start(): Promise<void> {
    if (this.deps.releaseLeasesOnStart) {
      const released = await this.deps.store.webhooks.releaseLeases();
      if (released > 0) this.deps.log.info({ released }, 'webhook deliveries interrupted by a restart are due again');
    }
    this.started = true;
    this.blockedAsOf = undefined;
    this.claimNotBefore = 0;
    this.wake();
  }

  /** A task reached its final state; its delivery row, if it has one, was written with it. */
  taskFinished(taskId: string): void {
    if (this.blockedAsOf !== undefined) this.finishedWhileBlocked.add(taskId);
    this.pumpSoon();
  }

  /** Something new may be due now (an operator replayed a delivery). */
  wake(): void {
    this.blockedAsOf = undefined;
    this.pumpSoon();
  }

  /**
   * A delivery comes due at `at` (some node scheduled a retry; PostgreSQL tells every node). Looks then if this node
   * would otherwise look later: the node that scheduled it may stop or die before. No claim now, only the timer.
   */
  dueAt(at: number): void {
    this.heardDueAt = Math.min(this.heardDueAt ?? at, at);
    // While a pump runs, it arms the timer when it ends (schedule reads heardDueAt).
    if (!this.started || this.pumping || this.timerAt === undefined || this.timerAt <= at) return;
    this.arm(Math.max(5, at - this.deps.clock.now()));
  }

  private pumpSoon(): void {
    if (!this.started) return;
    if (this.pumping) {
      this.again = true;
      return;
    }
    this.pumpRun = this.pump();
  }

  /**
   * Stops claiming; lets attempts in flight finish for up to `timeoutMs`, then aborts them: they stay due, and their
   * leases are handed back, so another node can send them, and they stop counting against their accounts' caps, at
   * once rather than when the leases run out (attempt timeout + 30 s).
   */
  async stop(timeoutMs: number): Promise<void> {
    this.started = false;
    clearTimeout(this.timer);
    this.timerAt = undefined;
    // A claim in flight now (a task that finished while draining woke it) must not start attempts after this returns.
    await this.pumpRun;
    let timeout: NodeJS.Timeout | undefined;
    await Promise.race([Promise.allSettled([...this.inFlight.keys()]), new Promise((r) => (timeout = setTimeout(r, timeoutMs)))]);
    clearTimeout(timeout);
    const aborted = [...this.inFlight.values()];
    for (const { controller } of aborted) controller.abort(new Error('shutdown'));
    await Promise.allSettled([...this.inFlight.keys()]);
    if (aborted.length === 0) return;
    try {
      // Only leases still as claimed: an attempt that got its answer before the abort recorded it (and cleared its
      // lease) itself.
      const released = await this.deps.store.webhooks.releaseLeases(aborted.map(({ id, leaseUntil }) => ({ id, leaseUntil })));
      if (released > 0) this.deps.log.info({ released }, 'webhook deliveries cut short by shutdown are due again');
    } catch (err) {
      this.deps.log.error({ err }, 'webhook dispatcher could not hand back its leases; they run out by themselves');
    }
  }

  get inFlightCount(): number {
    return this.inFlight.size;
  }

  private async pump(): Promise<void> {
    const { store, clock, policy, log } = this.deps;
    this.pumping = true;
    let nextDue: { at: number | undefined } | undefined;
    try {
      do {
        this.again = false;
        nextDue = undefined;
        const free = policy.concurrency - this.inFlight.size;
        if (free <= 0) break;
        if (this.blockedAsOf !== undefined && clock.now() - this.blockedAsOf >= IDLE_RECHECK_MS) this.blockedAsOf = undefined;
        if (this.blockedAsOf === undefined) this.finishedWhileBlocked.clear();
        else if (this.finishedWhileBlocked.size > 0) {
          const finished = [...this.finishedWhileBlocked];
          this.finishedWhileBlocked.clear();
          if (await store.webhooks.anyPending(finished)) this.blockedAsOf = undefined;
        }
        // Every finished task wakes us, and most have no webhook. A claim is a write transaction (on SQLite, a round
        // trip to the writer thread); asking first whether anything is due is one read.
        const at = await store.webhooks.nextDueAt(this.blockedAsOf);
        if (at === undefined || at > clock.now()) {
          nextDue = { at };
          continue; // a wake-up that came meanwhile (this.again) looks again; otherwise the timer takes over
        }
        if (clock.now() < this.claimNotBefore) {
          nextDue = { at: this.claimNotBefore };
          continue;
        }
        if (!this.started) break;
        const claimedAt = clock.now();
        const endedBefore = this.attemptsEnded;
        const leaseMs = policy.timeoutMs + LEASE_MARGIN_MS;
        const due = await store.webhooks.claimDue(claimedAt, free, leaseMs, policy.perAccount);
        if (!this.started) {
          // Stopped while claiming: hand the rows back unattempted rather than start sending during a shutdown.
          if (due.length > 0) await store.webhooks.releaseLeases(due.map((d) => ({ id: d.id, leaseUntil: claimedAt + leaseMs })));
          break;
        }
        const took = clock.now() - claimedAt; // a clock step shows up here too: hence the ceiling on the spacing
        for (const delivery of due) this.track(delivery, claimedAt + leaseMs);
        if (due.length === free) {
          this.again = true;
          this.blockedAsOf = undefined;
          this.claimNotBefore = 0;
        } else {
          this.claimNotBefore = took >= SLOW_CLAIM_MS ? clock.now() + Math.min(MAX_CLAIM_SPACING_MS, BLOCKED_CLAIM_SPACING * took) : 0;
          // Fewer than asked for: whatever was due at claimedAt and is still unclaimed is capped. One of our attempts
          // ending wakes us for those; what the timer waits for is the next row due after claimedAt (one that fell
          // due while the claim ran is found at once: it is not after now, so the timer is the shortest).
          this.blockedAsOf = this.attemptsEnded === endedBefore ? claimedAt : undefined;
          if (!this.again) nextDue = { at: await store.webhooks.nextDueAt(claimedAt) };
        }
      } while (this.again && this.started);
    } catch (err) {
      log.error({ err }, 'webhook dispatcher could not claim deliveries');
    } finally {
      this.pumping = false;
    }
    await this.schedule(nextDue);
  }

  private track(delivery: WebhookDelivery, leaseUntil: number): void {
    const controller = new AbortController();
    const run = this.deliver(delivery, controller.signal)
      .catch((err: unknown) => this.deps.log.error({ err, deliveryId: delivery.id }, 'webhook delivery failed unexpectedly'))
      .finally(() => {
        this.inFlight.delete(run);
        this.attemptsEnded++;
        this.blockedAsOf = undefined; // a slot is free: an account at its cap may have room now
        this.pumpSoon();
      });
    this.inFlight.set(run, { controller, id: delivery.id, leaseUntil });
  }

  /**
   * Arms the timer for the next due row; none while every slot is busy (a finishing attempt wakes us). `known`: the
   * next due time the pump has just read, so it is not read twice.
   */
  private async schedule(known?: { at: number | undefined }): Promise<void> {
    clearTimeout(this.timer);
    this.timerAt = undefined;
    if (!this.started || this.inFlight.size >= this.deps.policy.concurrency) return;
    let delay = IDLE_RECHECK_MS;
    try {
      const at = known ? known.at : await this.deps.store.webhooks.nextDueAt(this.blockedAsOf);
      if (at !== undefined) delay = Math.min(IDLE_RECHECK_MS, Math.max(5, at - this.deps.clock.now()));
    } catch (err) {
      this.deps.log.error({ err }, 'webhook dispatcher could not read the next due time');
    }
    // A due time heard of while the pump ran may not have been committed when it read (the notice follows the commit).
    const now = this.deps.clock.now();
    if (this.heardDueAt !== undefined && this.heardDueAt <= now) this.heardDueAt = undefined;
    if (this.heardDueAt !== undefined) delay = Math.min(delay, Math.max(5, this.heardDueAt - now));
    if (!this.started) return;
    this.arm(delay);
  }

  private arm(delay: number): void {
    clearTimeout(this.timer);
    this.timerAt = this.deps.clock.now() + delay;
    this.timer = setTimeout(() => {
      this.timerAt = undefined;
      this.pumpSoon();
    }, delay);
    this.timer.unref();
  }

  private async deliver(delivery: WebhookDelivery, signal: AbortSignal): Promise<void> {
    const { store, clock, policy, log } = this.deps;
    const at = clock.now();
    const [task, account] = await Promise.all([store.tasks.getTask(delivery.taskId), store.accounts.getAccount(delivery.accountId)]);
    if (!task || !account) {
      const attempt = { at, latencyMs: 0, error: 'the task or its account no longer exists' };
      await store.webhooks.recordAttempt(delivery.id, attempt, { state: 'failed' });
      this.events.emit('attempt', { delivery, attempt, step: { state: 'failed' } } satisfies WebhookAttemptEvent);
      return;
    }
    const body = this.deps.render(task);
    const headers = {
      'content-type': 'application/json',
      'user-agent': 'aigc-relay-webhooks/1',
      ...signedHeaders(secretsAt(account, at), delivery.messageId, Math.floor(at / 1000), body),
    };
    const started = performance.now();
    let status: number | undefined;
    let responseBody: string | undefined;
    let error: string | undefined;
    let refused = false;
    try {
      const answer = await this.deps.post(delivery.url, { headers, body, timeoutMs: policy.timeoutMs, signal, owner: delivery.accountId });
      status = answer.status;
      responseBody = excerpt(answer.body);
    } catch (err) {
      // Shutting down is not the receiver's failure: record nothing; the row stays due for the next start.
      if (signal.aborted) return;
      error = excerpt(err instanceof Error ? err.message : String(err));
      refused = err instanceof WebhookRefused;
    }
    const latencyMs = Math.round(performance.now() - started);
    const step = nextStep(policy, delivery, status, clock.now(), refused);
    const attempt: NewWebhookAttempt = {
      at,
      latencyMs,
      ...(status !== undefined ? { status } : {}),
      ...(error !== undefined ? { error } : {}),
      ...(responseBody ? { responseBody } : {}),
    };
    await store.webhooks.recordAttempt(delivery.id, attempt, step);
    this.events.emit('attempt', { delivery, attempt, step } satisfies WebhookAttemptEvent);
    const fields = { deliveryId: delivery.id, taskId: delivery.taskId, attempt: delivery.attempts + 1, status, latencyMs, next: step.state };
    if (step.state === 'delivered') log.info(fields, 'webhook delivered');
    else log.warn({ ...fields, error }, 'webhook attempt failed');
  }
}
