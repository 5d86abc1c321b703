import { describe, expect, it } from 'vitest';
import { createUrlInputFetcher } from '../../src/adapters/http-fetch/image-fetcher';
import { OutboundError, type OutboundErrorKind } from '../../src/adapters/http-fetch/outbound-guard';
import type { SafeHttpClient } from '../../src/adapters/http-fetch/safe-client';
import { ProviderError } from '../../src/ports/provider';

/**
 * Which failures of a URL input's download are worth another attempt. The download runs inside the attempt and holds
 * its render slot, so a failure that took the whole deadline is not tried again; one that failed fast may be.
 */
describe('a URL input that cannot be fetched', () => {
  const failingWith = (kind: OutboundErrorKind, retryable: boolean, tookWholeDeadline = false) => {
    const client: SafeHttpClient = { request: () => Promise.reject(new OutboundError(kind, `the ${kind} failure`, retryable, { tookWholeDeadline })) };
    return createUrlInputFetcher(client, 1024);
  };
  const failure = async (fetch: ReturnType<typeof createUrlInputFetcher>): Promise<ProviderError> => {
    const error = await fetch('https://images.example/a.png', 'file_infos[0].url').then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(ProviderError);
    return error as ProviderError;
  };

  it('fails for good after its whole deadline (a server trickling its bytes held the slot all that time), naming the field', async () => {
    const error = await failure(failingWith('timeout', true, true));
    expect([error.code, error.retryable, error.message]).toEqual(['InvalidParameterValue', false, 'file_infos[0].url: the timeout failure']);
  });

  it('is tried again after a step of it timed out (connecting, or a pause in the answer), which ends sooner', async () => {
    expect((await failure(failingWith('timeout', true))).retryable).toBe(true);
  });

  it('is tried again after a failed connection, which fails fast', async () => {
    expect((await failure(failingWith('unreachable', true))).retryable).toBe(true);
  });

  it('fails for good when refused', async () => {
    expect((await failure(failingWith('refused', false))).retryable).toBe(false);
  });

  it('is tried again after a 5xx answer, not after a 4xx', async () => {
    const answering = (status: number) => createUrlInputFetcher({ request: async () => ({ status, headers: {}, body: Buffer.alloc(0) }) } as unknown as SafeHttpClient, 1024);
    expect((await failure(answering(503))).retryable).toBe(true);
    expect((await failure(answering(404))).retryable).toBe(false);
  });
});
