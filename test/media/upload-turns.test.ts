import { describe, expect, it } from 'vitest';
import { TakeTurns, TurnNotWanted, TurnsFull } from '../../src/app/image-check';
import { UploadsInProgress } from '../../src/app/uploads';
import { RelayError } from '../../src/domain/errors';

describe('TakeTurns (image decodes at once)', () => {
  it('a run of weight N takes N turns: it waits for them all, and a lighter run behind it does not pass it', async () => {
    const turns = new TakeTurns(2);
    const started: string[] = [];
    const release = new Map<string, () => void>();
    const job = (name: string, weight?: number) =>
      turns.run(() => new Promise<void>((resolve) => (started.push(name), release.set(name, resolve))), weight ? { weight } : {});
    const light = job('light');
    const heavy = job('heavy', 2);
    const behind = job('behind');
    await Promise.resolve();
    expect(started).toEqual(['light']); // one turn free, but the heavy run needs two; the one behind it waits too
    release.get('light')!();
    await light;
    expect(started).toEqual(['light', 'heavy']);
    expect(turns.busy).toBe(2);
    release.get('heavy')!();
    await heavy;
    expect(started).toEqual(['light', 'heavy', 'behind']);
    release.get('behind')!();
    await behind;
    expect(turns.busy).toBe(0);
  });

  it('a heavy waiter that gives up lets the lighter ones behind it start', async () => {
    const turns = new TakeTurns(2);
    let releaseFirst!: () => void;
    const first = turns.run(() => new Promise<void>((resolve) => (releaseFirst = resolve)));
    const abort = new AbortController();
    const heavy = turns.run(async () => 'ran', { weight: 2, signal: abort.signal });
    let lightRan = false;
    const light = turns.run(async () => (lightRan = true));
    abort.abort();
    await expect(heavy).rejects.toBeInstanceOf(TurnNotWanted);
    await light;
    expect(lightRan).toBe(true);
    releaseFirst();
    await first;
  });

  it('runs at most N at a time, the rest first come first served; a failure passes its turn on', async () => {
    const turns = new TakeTurns(2);
    const started: number[] = [];
    const release = new Map<number, (fail: boolean) => void>();
    const job = (n: number) =>
      turns.run(
        () =>
          new Promise<number>((resolve, reject) => {
            started.push(n);
            release.set(n, (fail) => (fail ? reject(new Error(`job ${n} failed`)) : resolve(n)));
          }),
      );
    const jobs = [1, 2, 3, 4].map(job);
    await Promise.resolve();
    expect(started).toEqual([1, 2]);
    expect(turns.queued).toBe(2);
    release.get(2)!(true);
    await expect(jobs[1]).rejects.toThrow('job 2 failed');
    expect(started).toEqual([1, 2, 3]);
    release.get(1)!(false);
    expect(await jobs[0]).toBe(1);
    expect(started).toEqual([1, 2, 3, 4]);
    expect(turns.queued).toBe(0);
    release.get(3)!(false);
    release.get(4)!(false);
    expect(await Promise.all(jobs.slice(2))).toEqual([3, 4]);
    // All turns given back: two start at once again.
    const again = [5, 6].map(job);
    await Promise.resolve();
    expect(started.slice(4)).toEqual([5, 6]);
    release.get(5)!(false);
    release.get(6)!(false);
    await Promise.all(again);
  });
});

describe('TakeTurns: a bounded line, and turns nobody wants', () => {
  it('refuses with TurnsFull once maxWaiting wait, but never while a slot is free', async () => {
    const turns = new TakeTurns(1);
    let releaseFirst!: () => void;
    const first = turns.run(() => new Promise<void>((resolve) => (releaseFirst = resolve)), { maxWaiting: 0 }); // a free slot: runs
    await Promise.resolve();
    await expect(turns.run(async () => 'never', { maxWaiting: 0 })).rejects.toBeInstanceOf(TurnsFull);
    const waiting = turns.run(async () => 'second', { maxWaiting: 1 }); // room for one in line
    await expect(turns.run(async () => 'never', { maxWaiting: 1 })).rejects.toThrow(TurnsFull);
    expect(turns.queued).toBe(1);
    releaseFirst();
    await first;
    expect(await waiting).toBe('second');
    expect(turns.busy).toBe(0);
  });

  it('only runs that gave a bound count against it: unbounded waiters take no bounded one\'s place', async () => {
    const turns = new TakeTurns(1);
    let release!: () => void;
    const first = turns.run(() => new Promise<void>((resolve) => (release = resolve)));
    const unbounded = [1, 2, 3].map((n) => turns.run(async () => n));
    const bounded = turns.run(async () => 'bounded', { maxWaiting: 1 }); // three wait, none of them bounded
    await expect(turns.run(async () => 'never', { maxWaiting: 1 })).rejects.toThrow(TurnsFull);
    release();
    await first;
    expect(await Promise.all(unbounded)).toEqual([1, 2, 3]);
    expect(await bounded).toBe('bounded');
  });

  it('a run whose signal aborts while it waits leaves the line at once, never runs, and frees its place', async () => {
    const turns = new TakeTurns(1);
    let release!: () => void;
    const first = turns.run(() => new Promise<void>((resolve) => (release = resolve)));
    const gone = new AbortController();
    let ran = false;
    const abandoned = turns.run(async () => void (ran = true), { maxWaiting: 1, signal: gone.signal });
    const after = turns.run(async () => 'after');
    expect(turns.queued).toBe(2);
    gone.abort(); // the client hung up while the first still runs
    await expect(abandoned).rejects.toBeInstanceOf(TurnNotWanted);
    expect(turns.queued).toBe(1);
    // Its place in the bounded line is free again.
    const next = turns.run(async () => 'next', { maxWaiting: 1 });
    release();
    await first;
    expect(await after).toBe('after');
    expect(await next).toBe('next');
    expect(ran).toBe(false);
    expect(turns.busy).toBe(0);
    // Aborted before it was even called: refused without taking a free slot.
    await expect(turns.run(async () => 'never', { signal: gone.signal })).rejects.toBeInstanceOf(TurnNotWanted);
    expect(turns.busy).toBe(0);
  });
});

describe('UploadsInProgress', () => {
  const codeOf = (f: () => unknown) => {
    try {
      f();
    } catch (err) {
      return err instanceof RelayError ? [err.code, err.retryAfterSeconds] : err;
    }
    return 'admitted';
  };

  it('bounds each account and the process; a place given back twice counts once', () => {
    const uploads = new UploadsInProgress(3, 2);
    const a1 = uploads.enter('a');
    uploads.enter('a');
    expect(codeOf(() => uploads.enter('a'))).toEqual(['LimitExceeded.Concurrency', 1]);
    const b1 = uploads.enter('b');
    expect(codeOf(() => uploads.enter('c'))).toEqual(['ResourceUnavailable', 1]); // the process is full
    a1();
    a1(); // again: no effect
    expect(uploads.size).toBe(2);
    expect(codeOf(() => uploads.enter('c'))).toBe('admitted');
    expect(codeOf(() => uploads.enter('a'))).toEqual(['ResourceUnavailable', 1]);
    b1();
    expect(codeOf(() => uploads.enter('a'))).toBe('admitted');
    expect(codeOf(() => uploads.enter('a'))).toEqual(['LimitExceeded.Concurrency', 1]);
  });
});
