import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { makeDirDurablySync, writeDurably, writeThenRenameSync } from '../../src/adapters/fs/durable-files';
import { tempDir } from '../helpers/relay';

afterEach(() => vi.restoreAllMocks());

/** Records, in order, which paths were flushed and renamed (fds are mapped back to the paths they were opened on). */
function recordFlushes(): string[] {
  const events: string[] = [];
  const opened = new Map<number, string>();
  const open = fs.openSync;
  vi.spyOn(fs, 'openSync').mockImplementation(((p: fs.PathLike, ...rest: unknown[]) => {
    const fd = (open as (...a: unknown[]) => number)(p, ...rest);
    opened.set(fd, String(p));
    return fd;
  }) as typeof fs.openSync);
  const fsync = fs.fsyncSync;
  vi.spyOn(fs, 'fsyncSync').mockImplementation((fd) => (events.push(`fsync ${opened.get(fd as number)}`), fsync(fd)));
  const fdatasync = fs.fdatasyncSync;
  vi.spyOn(fs, 'fdatasyncSync').mockImplementation((fd) => (events.push(`fdatasync ${opened.get(fd as number)}`), fdatasync(fd)));
  const rename = fs.renameSync;
  vi.spyOn(fs, 'renameSync').mockImplementation((from, to) => (events.push(`rename ${String(from)} -> ${String(to)}`), rename(from, to)));
  return events;
}

describe('durable files', () => {
  it('flushes the bytes before the rename that makes them visible', () => {
    const root = tempDir('aigc-relay-durable-');
    const events = recordFlushes();
    const file = path.join(root, 'a.png');
    writeThenRenameSync(`${file}.tmp`, file, Buffer.from('image'));
    expect(events).toEqual([`fdatasync ${file}.tmp`, `rename ${file}.tmp -> ${file}`]);
    expect(fs.readFileSync(file, 'utf8')).toBe('image');
  });

  it('makes a directory chain whose every new entry is flushed in its parent, and does nothing for one that exists', () => {
    const root = tempDir('aigc-relay-durable-');
    const events = recordFlushes();
    makeDirDurablySync(path.join(root, 'outputs', 'bucket'));
    expect(events.sort()).toEqual([`fsync ${path.join(root, 'outputs')}`, `fsync ${root}`].sort());
    events.length = 0;
    makeDirDurablySync(path.join(root, 'outputs', 'bucket'));
    expect(events).toEqual([]);
    expect(fs.statSync(path.join(root, 'outputs', 'bucket')).isDirectory()).toBe(true);
  });

  it('the promise form lands the bytes under the key and leaves no temporary file', async () => {
    const root = tempDir('aigc-relay-durable-');
    const file = path.join(root, 'x', 'y', 'b.png');
    await writeDurably(`${file}.tmp`, file, Buffer.from([1, 2, 3]));
    expect([...fs.readFileSync(file)]).toEqual([1, 2, 3]);
    expect(fs.readdirSync(path.dirname(file))).toEqual(['b.png']);
  });
});
