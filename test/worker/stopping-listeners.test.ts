import { describe, expect, it } from 'vitest';
import { ControlledProvider } from '../../src/adapters/fakes/controlled-provider';
import { apiClient } from '../helpers/api';
import { solidPng } from '../helpers/images';
import { openRelay, PROMPT_BODY, tempDir } from '../helpers/relay';

/**
 * Every Tencent run listens on the engine's one `stopping` signal while it follows its upstream task (run-state.ts
 * unlessStopping), and removes its listener when it ends: one per run in flight, as many as the channels' slots.
 * Past ten Node printed "MaxListenersExceededWarning: Possible EventTarget memory leak detected" on stderr of every
 * node whose channels had room for eleven tasks at once (the scale-out soak: three channels of 16), a leak
 * warning for what is not one.
 */
const image = await solidPng('#3366aa', 8, 8);

describe("the engine's stopping signal", () => {
  it('takes a listener from every run in flight without a leak warning', async () => {
    const runs = 12;
    const provider = new ControlledProvider('local-preview', runs, image);
    const held: Array<() => void> = [];
    provider.events.on('started', (run: { ctx: { stopping?: AbortSignal } }) => {
      const onStop = () => undefined;
      run.ctx.stopping!.addEventListener('abort', onStop, { once: true });
      held.push(() => run.ctx.stopping!.removeEventListener('abort', onStop));
    });
    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on('warning', onWarning);
    const { relay, url } = await openRelay(tempDir(), {}, { providers: [provider] });
    try {
      const api = apiClient(url, relay.firstStart.devKey!);
      for (let i = 0; i < runs; i++) expect((await api.post('/tencent-vod/v1/aigc-image', PROMPT_BODY)).status).toBe(200);
      await provider.whenRunning(runs);
      // Node emits the warning on the next tick after the listener that passes the limit.
      await new Promise((resolve) => setImmediate(resolve));
      expect(warnings.filter((w) => w.name === 'MaxListenersExceededWarning').map((w) => w.message)).toEqual([]);
      for (const release of held) release();
      for (const run of [...provider.running.values()]) run.succeed();
    } finally {
      process.off('warning', onWarning);
      await relay.close(500);
    }
  });
});
