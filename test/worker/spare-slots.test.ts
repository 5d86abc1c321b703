import { describe, expect, it } from 'vitest';
import { ControlledProvider } from '../../src/adapters/fakes/controlled-provider';
import type { ModelCapacity } from '../../src/ports/provider';
import { solidPng } from '../helpers/images';
import { PROMPT_BODY, startTestRelay, waitForTask } from '../helpers/relay';
import { closedAfterEach } from '../helpers/closed-after-each';

const PNG = await solidPng('#123456');
const startRelay = closedAfterEach(startTestRelay);

/**
 * One upstream slot that serves two models, plus one spare lane slot (ImageProvider.spareSlots), as the Tencent
 * provider has with one channel of `max_concurrency: 1`: both models' quotas are 1 while the slot is free.
 */
class OneSharedSlot extends ControlledProvider {
  readonly spareSlots = 1;
  /** The upstream slot, off until the test has queued what it needs. */
  open = false;

  constructor() {
    super('shared-slot', 2, PNG);
  }

  modelCapacity(): ReadonlyMap<string, ModelCapacity> {
    const free = this.open && this.running.size === 0 ? 1 : 0;
    return new Map([
      ['GEM:3.0', { total: 1, free }],
      ['GEM:2.5', { total: 1, free }],
    ]);
  }
}

describe('the spare lane slot', () => {
  it('is never given to a second new submission when two models share the only free slot', async () => {
    const provider = new OneSharedSlot();
    const t = await startRelay({ overrides: { providers: [provider] } });
    const submit = async (version: string, priority: number) => {
      const res = await t.api.post('/tencent-vod/v1/aigc-image', { ...PROMPT_BODY, model_version: version, tasks_priority: priority });
      expect(res.status).toBe(200);
      return res.body.request_id as string;
    };
    const gem30 = await submit('3.0', 5);
    const gem25 = await submit('2.5', 1);
    const later = await submit('3.0', 9);
    // All three wait: the slot is not free yet.
    expect(t.relay.engine.queueDepth()).toBe(3);

    provider.open = true;
    t.relay.engine.kick(provider.id);
    const first = await provider.whenStarted();
    expect(first.job.taskId).toBe(later);
    await t.relay.engine.claimsSettled();
    // The other two stay queued, in dispatch order, not started for the slot the first one took.
    expect(provider.started).toEqual([later]);
    for (const id of [gem30, gem25]) expect((await t.relay.store.tasks.getTask(id))!.state).toBe('queued');

    first.succeed();
    (await provider.whenStarted(gem30)).succeed();
    (await provider.whenStarted(gem25)).succeed();
    for (const id of [later, gem30, gem25]) expect((await waitForTask(t.relay, id)).state).toBe('succeeded');
    expect(provider.started).toEqual([later, gem30, gem25]);
    expect(provider.maxSeenConcurrency).toBe(1);
  });

  it('still takes a task of a model no capacity serves, to fail it at once, while the served slot is busy', async () => {
    const provider = new OneSharedSlot();
    provider.open = true;
    const t = await startRelay({ overrides: { providers: [provider] } });
    const busy = await t.api.post('/tencent-vod/v1/aigc-image', { ...PROMPT_BODY });
    const running = await provider.whenStarted(busy.body.request_id as string);
    // Hunyuan is not listed by modelCapacity: the spare slot is its way through.
    const unserved = await t.api.post('/tencent-vod/v1/aigc-image', { model_name: 'Hunyuan', model_version: '3.0', prompt: PROMPT_BODY.prompt });
    expect(unserved.status).toBe(200);
    const run = await provider.whenStarted(unserved.body.request_id as string);
    expect(provider.running.size).toBe(2);
    run.succeed();
    running.succeed();
    expect((await waitForTask(t.relay, unserved.body.request_id as string)).state).toBe('succeeded');
  });
});
