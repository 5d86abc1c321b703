import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { DirectorySyncs } from '../../src/adapters/fs/durable-files';
import { DurableWriter, fileOfTemporary } from '../../src/adapters/fs/durable-writer';
import { tempDir } from '../helpers/relay';

afterEach(() => vi.restoreAllMocks());

/** The path each descriptor opened from now on was opened on. */
function trackOpened(): Map<number, string> {
  const opened = new Map<number, string>();
  const openSync = fs.openSync;
  vi.spyOn(fs, 'openSync').mockImplementation(((file: fs.PathLike, ...rest: unknown[]) => {
    const fd = (openSync as (...a: unknown[]) => number)(file, ...rest);
    opened.set(fd, String(file));
    return fd;
  }) as typeof fs.openSync);
  return opened;
}

/** Records, in order, which paths were flushed (fsync: a directory, fdatasync: a file's data) and renamed. */
function recordFlushes(): string[] {
  const events: string[] = [];
  const opened = trackOpened();
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

  it('a put cut off before its rename (a crash) leaves a temporary that fileOfTemporary names the file of', async () => {
    const root = tempDir('aigc-relay-durable-');
    const file = path.join(root, 'outputs', 'b3', 'a.png');
    // The crash: the process stops between the write and the rename, so neither the rename nor the clean-up runs.
    vi.spyOn(fs, 'renameSync').mockImplementation(() => {
      throw new Error('crashed here');
    });
    vi.spyOn(fs, 'rmSync').mockImplementation(() => undefined);
    for (const tag of ['i', 'w']) await expect(new DurableWriter(tag).put(file, Buffer.from('half'))).rejects.toThrow('crashed here');
    const left = fs.readdirSync(path.dirname(file));
    expect(left).toHaveLength(2);
    for (const name of left) expect(fileOfTemporary(name), name).toBe('a.png');
    expect(fileOfTemporary('a.png')).toBeUndefined();
    expect(() => new DurableWriter('W1')).toThrow(/lower-case letters/);
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

describe('durable writes, concurrent', () => {
  it('a put into a directory another put is still making waits until the directory is flushed in its parent', async () => {
    const root = tempDir('aigc-relay-durable-');
    const events: string[] = [];
    const opened = trackOpened();
    // Flushes answer at once (within microtasks), except the parent's, which finishes only when the test says so:
    // a put that did not wait for it would resolve before the next turn of the event loop.
    let releaseParent!: () => void;
    const parentFlushed = new Promise<void>((resolve) => (releaseParent = resolve));
    vi.spyOn(fs, 'fsync').mockImplementation(((fd: number, callback: fs.NoParamCallback) => {
      if (opened.get(fd) === root) void parentFlushed.then(() => (events.push('parent flushed'), callback(null)));
      else queueMicrotask(() => callback(null));
    }) as typeof fs.fsync);
    vi.spyOn(fs, 'fdatasync').mockImplementation(((_fd: number, callback: fs.NoParamCallback) => queueMicrotask(() => callback(null))) as typeof fs.fdatasync);
    const writer = new DurableWriter('t');
    const dir = path.join(root, 'bucket');
    const a = writer.put(path.join(dir, 'a.png'), Buffer.from('a')).then(() => events.push('a resolved'));
    const b = writer.put(path.join(dir, 'b.png'), Buffer.from('b')).then(() => events.push('b resolved'));
    await new Promise((resolve) => setImmediate(resolve));
    expect(events).toEqual([]); // neither may report its file while the directory entry itself is not on disk
    releaseParent();
    await Promise.all([a, b]);
    expect(events[0]).toBe('parent flushed');
    expect(events.slice(1).sort()).toEqual(['a resolved', 'b resolved']);
  });

  it('never has more writes in flight than it was given, and a failed write leaves no temporary file', async () => {
    const root = tempDir('aigc-relay-durable-');
    let inFlight = 0;
    let most = 0;
    const fdatasync = fs.fdatasync;
    vi.spyOn(fs, 'fdatasync').mockImplementation(((fd: number, callback: fs.NoParamCallback) => {
      most = Math.max(most, ++inFlight);
      fdatasync(fd, (err) => {
        inFlight--;
        callback(err);
      });
    }) as typeof fs.fdatasync);
    const writer = new DurableWriter('t', 2);
    await Promise.all(Array.from({ length: 20 }, (_, i) => writer.put(path.join(root, 'd', `${i}.png`), Buffer.from([i]))));
    expect(most).toBe(2);
    expect(fs.readdirSync(path.join(root, 'd'))).toHaveLength(20);

    vi.spyOn(fs, 'renameSync').mockImplementation(() => {
      throw Object.assign(new Error('no space left'), { code: 'ENOSPC' });
    });
    await expect(writer.put(path.join(root, 'd', 'x.png'), Buffer.from('x'))).rejects.toMatchObject({ code: 'ENOSPC' });
    expect(fs.readdirSync(path.join(root, 'd')).filter((n) => n.endsWith('.tmp'))).toEqual([]);
  });
});
