import { beforeAll, describe, expect, it } from 'vitest';
import { CONCURRENT_INPUT_FETCHES, createInputResolver, type UrlFetcher } from '../../src/app/inputs';
import type { FileStorage } from '../../src/ports/file-storage';
import type { Store, TaskRecord } from '../../src/ports/store';
import { ProviderError } from '../../src/ports/provider';
import { waitUntil } from '../helpers/eventually';
import { makeImage } from '../media/support';

/**
 * The run-time input resolver on its own, with a fetcher the test answers by hand: how many fetches run at once,
 * that the images keep the request's order, and that the first failure tears the other fetches down.
 */
interface PendingFetch {
  readonly url: string;
  readonly signal: AbortSignal | undefined;
  readonly owner: string | undefined;
  answer(data: Buffer): void;
  fail(error: Error): void;
}

function handFetcher() {
  const pending: PendingFetch[] = [];
  const fetchUrl: UrlFetcher = (url, _field, signal, owner) =>
    new Promise((resolve, reject) => {
      pending.push({
        url,
        signal,
        owner,
        answer: (data) => resolve({ data, contentType: 'application/octet-stream' }),
        fail: reject,
      });
      signal?.addEventListener('abort', () => reject(signal.reason), { once: true });
    });
  return { fetchUrl, pending };
}

const taskWithUrls = (count: number): TaskRecord =>
  ({ id: 'task-1', accountId: 'acct-1', input: { file_infos: Array.from({ length: count }, (_, i) => ({ type: 'Url', url: `https://img.example/${i}.png` })) } }) as unknown as TaskRecord;

// Only URL inputs here: neither is reached.
const noStore = {} as Store;
const noStorage = {} as FileStorage;

let images: Buffer[];
beforeAll(async () => {
  images = await Promise.all([64, 80, 96, 112, 128, 144].map((width) => makeImage('png', width, 32)));
});

describe('input resolver', () => {
  it(`fetches up to ${CONCURRENT_INPUT_FETCHES} URL inputs at once, and returns them in the request's order`, async () => {
    const { fetchUrl, pending } = handFetcher();
    const resolving = createInputResolver(noStore, noStorage, fetchUrl)(taskWithUrls(6));
    await waitUntil(() => pending.length === CONCURRENT_INPUT_FETCHES, 5_000, `${CONCURRENT_INPUT_FETCHES} fetches under way`);
    // Answered out of order: the last started first, so the fifth and sixth start as turns come free.
    pending[3]!.answer(images[3]!);
    await waitUntil(() => pending.length === 5, 5_000, 'the fifth fetch');
    for (const i of [4, 0, 2, 1]) pending[i]!.answer(images[Number(pending[i]!.url.match(/(\d)\.png$/)![1])]!);
    await waitUntil(() => pending.length === 6, 5_000, 'the sixth fetch');
    pending[5]!.answer(images[Number(pending[5]!.url.match(/(\d)\.png$/)![1])]!);
    const resolved = await resolving;
    expect(resolved.map((image) => image.width)).toEqual([64, 80, 96, 112, 128, 144]);
    expect(resolved.every((image) => image.contentType === 'image/png' && image.height === 32)).toBe(true);
    // Each fetch is the task's account's, whose turn its name lookup waits in.
    expect(new Set(pending.map((p) => p.owner))).toEqual(new Set(['acct-1']));
  });

  it('the first failure fails the whole resolve, names its field, and aborts the fetches still under way', async () => {
    const { fetchUrl, pending } = handFetcher();
    const resolving = createInputResolver(noStore, noStorage, fetchUrl)(taskWithUrls(6));
    const outcome = resolving.then(() => undefined, (error: unknown) => error);
    await waitUntil(() => pending.length === CONCURRENT_INPUT_FETCHES, 5_000, `${CONCURRENT_INPUT_FETCHES} fetches under way`);
    pending[2]!.answer(Buffer.from('not an image at all'));
    const error = await outcome;
    expect(error).toBeInstanceOf(ProviderError);
    expect((error as ProviderError).retryable).toBe(false);
    expect((error as Error).message).toMatch(/^file_infos\[2\]\.url: /);
    expect([0, 1, 3].map((i) => pending[i]!.signal?.aborted)).toEqual([true, true, true]);
    // Nothing more was started after the failure.
    expect(pending).toHaveLength(CONCURRENT_INPUT_FETCHES);
  });

  it("the run's own abort (a cancel) ends the resolve with its reason and aborts every fetch", async () => {
    const { fetchUrl, pending } = handFetcher();
    const run = new AbortController();
    const outcome = createInputResolver(noStore, noStorage, fetchUrl)(taskWithUrls(2), run.signal).then(
      () => undefined,
      (error: unknown) => error,
    );
    await waitUntil(() => pending.length === 2, 5_000, 'both fetches under way');
    const reason = new Error('cancelled by the client');
    run.abort(reason);
    expect(await outcome).toBe(reason);
    expect(pending.map((p) => p.signal?.aborted)).toEqual([true, true]);
  });
});
