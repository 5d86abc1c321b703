import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { DirectorySyncs } from '../../src/adapters/fs/durable-files';
import { DurableWriter } from '../../src/adapters/fs/durable-writer';
import { tempDir } from '../helpers/relay';

afterEach(() => vi.restoreAllMocks());

/** Records, in order, which paths were flushed (fsync: a directory, fdatasync: a file's data) and renamed. */
function recordFlushes(): string[] {
  const events: string[] = [];
  const opened = new Map<number, string>();
  const openSync = fs.openSync;
  vi.spyOn(fs, 'openSync').mockImplementation(((file: fs.PathLike, ...rest: unknown[]) => {
    const fd = (openSync as (...a: unknown[]) => number)(file, ...rest);
    opened.set(fd, String(file));
    return fd;
  }) as typeof fs.openSync);
  for (const how of ['fsync', 'fdatasync'] as const) {
    const real = fs[how];
    vi.spyOn(fs, how).mockImplementation(((fd: number, callback: fs.NoParamCallback) => {
      events.push(`${how} ${opened.get(fd)}`);
      real(fd, callback);
    }) as typeof real);
  }
  const renameSync = fs.renameSync;
  vi.spyOn(fs, 'renameSync').mockImplementation((from, to) => (events.push(`rename ${String(from)}`), renameSync(from, to)));
  return events;
}

describe('durable writes', () => {
  it('flush the bytes, rename, flush the directory, and only then resolve; a new directory is flushed in its parents', async () => {
    const root = tempDir('aigc-relay-durable-');
    const events = recordFlushes();
    const writer = new DurableWriter('t');
    const file = path.join(root, 'outputs', 'b1', 'a.png');
    await writer.put(file, Buffer.from('image')).then(() => events.push('resolved'));
    const tmp = events.find((e) => e.startsWith('fdatasync '))!.slice('fdatasync '.length);
    expect(path.dirname(tmp)).toBe(path.dirname(file));
    expect(events).toEqual([
      // mkdir -p made outputs/ and outputs/b1/: each is an entry in its parent
      `fsync ${path.join(root, 'outputs')}`,
      `fsync ${root}`,
      `fdatasync ${tmp}`,
      `rename ${tmp}`,
      `fsync ${path.dirname(file)}`,
      'resolved',
    ]);
    expect(fs.readFileSync(file, 'utf8')).toBe('image');
    expect(fs.readdirSync(path.dirname(file))).toEqual(['a.png']);

    events.length = 0;
    await writer.put(path.join(path.dirname(file), 'b.png'), Buffer.from('two'));
    expect(events.map((e) => e.split(' ')[0])).toEqual(['fdatasync', 'rename', 'fsync']); // the directory is known now
  });

  it('makes a known directory again when it was removed behind its back', async () => {
    const root = tempDir('aigc-relay-durable-');
    const writer = new DurableWriter('t');
    const dir = path.join(root, 'outputs', 'b2');
    await writer.put(path.join(dir, 'a.png'), Buffer.from('1'));
    fs.rmSync(dir, { recursive: true });
    await writer.put(path.join(dir, 'b.png'), Buffer.from('2'));
    expect(fs.readdirSync(dir)).toEqual(['b.png']);
  });

  it('coalesces directory flushes: one running, one more for everyone who asked meanwhile', async () => {
    const root = tempDir('aigc-relay-durable-');
    const events = recordFlushes();
    const syncs = new DirectorySyncs();
    const flushesWhenSettled: number[] = [];
    const count = () => events.filter((e) => e === `fsync ${root}`).length;
    await Promise.all(Array.from({ length: 10 }, () => syncs.after(root).then(() => flushesWhenSettled.push(count()))));
    expect(count()).toBe(2);
    // The first caller was served by the first flush; the other nine asked while it ran, so only a flush that began
    // after their call (the second) covers them.
    expect(flushesWhenSettled).toEqual([1, 2, 2, 2, 2, 2, 2, 2, 2, 2]);
    await syncs.after(root);
    expect(count()).toBe(3); // idle again: a new call starts a new flush
  });
});
