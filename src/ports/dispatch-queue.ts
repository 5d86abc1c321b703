import { modelKey } from '../domain/models';
import type { TaskState } from '../domain/task-state';
import { hasWorkUnderway } from './provider';
import type { TaskRecord } from './store';

/**
 * Where the engine gets work from. The single-node queue keeps an in-memory priority index of the store; a
 * multi-node queue claims straight from a shared database (`FOR UPDATE SKIP LOCKED`). Either way a task is handed
 * out only after the store moved it `queued → running`, so two claimers can never both get it.
 */
export interface QueuedRef {
  readonly id: string;
  readonly provider: string;
  readonly priority: number;
  readonly seq: number;
  readonly notBefore?: number;
  readonly input: { readonly model_name: string; readonly model_version: string };
  readonly checkpoint?: unknown;
}

/**
 * At most this many tasks of each listed model key (`GEM:3.0`) in one claim; unlisted models are not limited
 * (ImageProvider.modelCapacity). Tasks with work under way (a checkpoint other than idle, ports/provider) are
 * never held back: they resume an upstream task, which may be exactly what fills their model's capacity.
 */
export type ModelQuotas = ReadonlyMap<string, number>;

/** The key a task counts under in ModelQuotas; undefined for a task that quotas never hold back. */
export function quotaKey(task: Pick<QueuedRef, 'input' | 'checkpoint'>): string | undefined {
  return hasWorkUnderway(task.checkpoint) ? undefined : modelKey(task.input);
}

/** What a queue tells the engine, and asks it; only `wake` is needed by every queue. */
export interface QueueListeners {
  /** A lane may have claimable work. */
  readonly wake: (lane: string) => void;
  /**
   * A task was settled outside its run (a cancel, an operator's force-fail) on another node: stop its provider call
   * here (announceSettled's other end).
   */
  readonly settledElsewhere?: (taskId: string) => void;
  /**
   * The tasks this node has a run of now. A queue whose claims are leases renews only those, so a task this node
   * claimed but lost track of (the claim's answer lost, its end never recorded) lapses to the others instead of being
   * kept alive by a node that will never run it.
   */
  readonly running?: () => readonly string[];
  /**
   * A task reached a terminal state on any node, this one included (for watchers: `Prefer: wait`, event streams). A
   * single node calls it for a queued task it finds settled by another process (the command line).
   */
  readonly finished?: (taskId: string, state: TaskState) => void;
  /**
   * `finished` calls may have been lost (the connection that carries other nodes' news was down for a while):
   * watchers must look at the store instead of waiting for an end that was announced while it was down.
   */
  readonly missedNews?: () => void;
  /** A running task's progress was saved on some node (for watchers of it on the others). */
  readonly progressed?: (taskId: string, progress: number) => void;
}

export interface DispatchQueue {
  /**
   * Recovers what a crash left behind, loads what is waiting and starts telling `listeners` (`wake` whenever a lane
   * may have claimable work). Returns how many tasks were recovered and how many are waiting.
   */
  start(listeners: QueueListeners): Promise<{ recovered: number; queued: number }>;
  /**
   * Tells every node that a task was settled outside its run (a cancel or an operator's force-fail), so the node
   * running it stops its provider call: `settledElsewhere(taskId)` is called there. A single node needs no message.
   */
  announceSettled(taskId: string): Promise<void>;
  /** A task was committed as `queued` (new, retried or handed back). */
  added(task: QueuedRef): void;
  /**
   * Claims up to `max` tasks of `lane` in dispatch order (priority desc, then FIFO), each moved to `running`,
   * passing over tasks of models whose quota is used up.
   */
  claim(lane: string, max: number, quotas?: ModelQuotas): Promise<TaskRecord[]>;
  /** Tasks waiting, as far as this node knows. */
  depth(): number;
  /**
   * Tasks of `lane` a claim made now would get, when the queue knows without asking the store (the single-node
   * index); absent when only the database knows. The engine sets aside that many slots for a claim in flight.
   */
  waiting?(lane: string, quotas?: ModelQuotas): number;
  stop(): Promise<void>;
}
