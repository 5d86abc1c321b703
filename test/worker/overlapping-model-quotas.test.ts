import { describe, expect, it } from 'vitest';
import { ControlledProvider } from '../../src/adapters/fakes/controlled-provider';
import { modelKey } from '../../src/domain/models';
import type { ModelCapacity, ProviderJob, ProviderResult, RunContext } from '../../src/ports/provider';
import { solidPng } from '../helpers/images';
import { PROMPT_BODY, startTestRelay, waitForTask } from '../helpers/relay';
import { closedAfterEach } from '../helpers/closed-after-each';

const PNG = await solidPng('#654321');
const startRelay = closedAfterEach(startTestRelay);

const X = 'GEM:2.5';
const Y = 'GEM:3.0';

interface Channel {
  readonly id: string;
  readonly serves: readonly string[];
  holder?: string;
}

/**
 * Upstream channels of one slot each, as the Tencent channel pool sees them, e.g. A serving X and Y, B serving Y
 * only: the per-model figures overlap (X total 1, Y total 2, for 2 slots in all). Like the pool, a run takes its slot
 * when it starts, or waits inside the provider for one, holding none (waitingForCapacity) and taken off its model's
 * `free`. A run takes the first free channel listed that serves its model: with A first, Y takes A when both are
 * free, as the pool's weighted draw may, and it is the draw that leaves X nothing.
 */
class OverlappingChannels extends ControlledProvider {
  readonly spareSlots = 1;
  /** As the Tencent provider: the engine loads no input bytes, so a run reaches its slot without waiting on I/O. */
  readonly wantsInputBytes = false;
  /** The channels, off until the test has queued what it needs. */
  open = false;
  /** Each time a run had to wait inside the provider: its task and model, and how many tasks were queued meanwhile. */
  readonly waitedInside: { taskId: string; model: string; queued: number }[] = [];
  queueDepth: () => number = () => 0;
  /** Told when a run starts waiting, as the pool tells its listeners (the engine may have room for another model). */
  capacityChanged: () => void = () => undefined;
  /** The claim each run came from, told apart by the event-loop turn its run started in (a claim starts its runs in one). */
  readonly turnOf = new Map<string, number>();
  private turn = 0;
  private turnEnding = false;
  private readonly channels: Channel[];
  private readonly seeking = new Map<string, number>();

  constructor(channels: readonly Omit<Channel, 'holder'>[]) {
    super('overlapping-channels', channels.length + 1, PNG);
    this.channels = channels.map((c) => ({ ...c }));
  }

  modelCapacity(): ReadonlyMap<string, ModelCapacity> {
    const capacity = new Map<string, ModelCapacity>();
    for (const key of [X, Y]) {
      const serving = this.channels.filter((c) => c.serves.includes(key));
      const free = this.open ? serving.filter((c) => c.holder === undefined).length : 0;
      capacity.set(key, { total: serving.length, free: Math.max(0, free - (this.seeking.get(key) ?? 0)) });
    }
    return capacity;
  }

  waitingForCapacity(): number {
    let n = 0;
    for (const count of this.seeking.values()) n += count;
    return n;
  }

  override async run(job: ProviderJob, ctx: RunContext): Promise<ProviderResult> {
    if (!this.turnEnding) {
      this.turnEnding = true;
      setImmediate(() => {
        this.turn++;
        this.turnEnding = false;
      });
    }
    this.turnOf.set(job.taskId, this.turn);
    const key = modelKey(job.input);
    let channel = this.take(key, job.taskId);
    if (!channel) {
      this.waitedInside.push({ taskId: job.taskId, model: key, queued: this.queueDepth() });
      this.seeking.set(key, (this.seeking.get(key) ?? 0) + 1);
      this.capacityChanged();
      try {
        while (!(channel = this.take(key, job.taskId))) {
          await new Promise<void>((resolve) => this.events.once('released', resolve));
        }
      } finally {
        this.seeking.set(key, this.seeking.get(key)! - 1);
      }
    }
    try {
      return await super.run(job, ctx);
    } finally {
      channel.holder = undefined;
      this.events.emit('released');
    }
  }

  /** The first free channel serving the model (A before B), taken for the task. */
  private take(key: string, taskId: string): Channel | undefined {
    const channel = this.channels.find((c) => c.serves.includes(key) && c.holder === undefined);
    if (channel) channel.holder = taskId;
    return channel;
  }
}

async function relayWith(channels: readonly Omit<Channel, 'holder'>[]) {
  const provider = new OverlappingChannels(channels);
  const t = await startRelay({ overrides: { providers: [provider] } });
  provider.queueDepth = () => t.relay.engine.queueDepth();
  provider.capacityChanged = () => t.relay.engine.kick(provider.id);
  const submit = async (key: string, priority: number) => {
    const [name, version] = key.split(':');
    const res = await t.api.post('/tencent-vod/v1/aigc-image', { ...PROMPT_BODY, model_name: name, model_version: version, tasks_priority: priority });
    expect(res.status).toBe(200);
    return res.body.request_id as string;
  };
  return { provider, t, submit };
}

describe('per-model quotas that overlap (a channel serving several models)', () => {
  it('start no run that must wait inside the provider for a slot another model took', async () => {
    const { provider, t, submit } = await relayWith([
      { id: 'A', serves: [X, Y] },
      { id: 'B', serves: [Y] },
    ]);
    const y1 = await submit(Y, 9);
    const x1 = await submit(X, 5);
    const y2 = await submit(Y, 1);
    expect(t.relay.engine.queueDepth()).toBe(3);

    // Quotas now: X 1, Y 2, for 2 slots. Taking Y1 and X1 in one claim starts X1 for the slot Y1 then takes (A),
    // and X1 waits inside the provider, shown running, while Y2 could have had B.
    provider.open = true;
    t.relay.engine.kick(provider.id);
    const first = await provider.whenStarted(y1);
    const second = await provider.whenStarted(y2);
    await t.relay.engine.claimsSettled();
    expect(provider.waitedInside).toEqual([]);
    // X1 stays queued until A frees: no slot it can use is free.
    expect((await t.relay.store.tasks.getTask(x1))!.state).toBe('queued');
    expect(provider.started).toEqual([y1, y2]);

    first.succeed();
    (await provider.whenStarted(x1)).succeed();
    second.succeed();
    for (const id of [y1, x1, y2]) expect((await waitForTask(t.relay, id)).state).toBe('succeeded');
    expect(provider.started).toEqual([y1, y2, x1]);
    expect(provider.waitedInside).toEqual([]);
    expect(provider.maxSeenConcurrency).toBe(2);
  });

  it('still claim a whole batch when every model can use every free slot (one account serving all models)', async () => {
    const { provider, t, submit } = await relayWith([
      { id: 'A1', serves: [X, Y] },
      { id: 'A2', serves: [X, Y] },
    ]);
    // Quotas X 2, Y 2 for 2 slots: they overlap, yet any two runs each find a slot, so one claim may take both.
    const y = await submit(Y, 9);
    const x = await submit(X, 5);
    provider.open = true;
    t.relay.engine.kick(provider.id);
    const runs = [await provider.whenStarted(y), await provider.whenStarted(x)];
    await t.relay.engine.claimsSettled();
    expect(provider.waitedInside).toEqual([]);
    expect(provider.turnOf.get(x)).toBe(provider.turnOf.get(y));
    for (const run of runs) run.succeed();
    for (const id of [y, x]) expect((await waitForTask(t.relay, id)).state).toBe('succeeded');
  });
});
