import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createFsFileStorage } from '../../src/adapters/fs/file-storage';
import type { FileStorage } from '../../src/ports/file-storage';
import { tempDir } from '../helpers/relay';

/** The file storage, with its writes on the file-writer thread (the server's default) and inline: the same contract. */
const opened: FileStorage[] = [];
afterEach(async () => {
  for (const s of opened.splice(0)) await s.close();
});

describe.each(['thread', 'inline'] as const)('fs file storage (%s writer)', (writer) => {
  const open = (root: string) => {
    const storage = createFsFileStorage(root, { writer });
    opened.push(storage);
    return storage;
  };

  it('writes bytes under their key, readable whole and by range, and leaves no temporary file behind', async () => {
    const root = tempDir('aigc-relay-files-');
    const storage = open(root);
    const bytes = Buffer.from(Array.from({ length: 5000 }, (_, i) => i % 251));
    // Several at once, as the engine does: they travel together and all land.
    await Promise.all([0, 1, 2].map((i) => storage.put(`outputs/task-${i}/0-file.png`, bytes)));
    for (const i of [0, 1, 2]) expect(Buffer.compare((await storage.get(`outputs/task-${i}/0-file.png`))!, bytes)).toBe(0);
    const stream = (await storage.stream('outputs/task-1/0-file.png', { start: 10, end: 19 }))!;
    const chunks: Buffer[] = [];
    for await (const chunk of stream) chunks.push(chunk as Buffer);
    expect(Buffer.concat(chunks)).toEqual(bytes.subarray(10, 20));
    expect(fs.readdirSync(path.join(root, 'outputs/task-0'))).toEqual(['0-file.png']);
  });

  it('refuses a key that escapes the root, and reports a file-system failure with its code', async () => {
    const root = tempDir('aigc-relay-files-');
    fs.writeFileSync(path.join(root, 'blocker'), 'not a directory');
    const storage = open(root);
    await expect(storage.put('../outside.png', Buffer.from('x'))).rejects.toThrow(/escapes the root/);
    await expect(storage.put('blocker/task/0.png', Buffer.from('x'))).rejects.toMatchObject({ code: 'ENOTDIR' });
    expect(fs.existsSync(path.join(root, '..', 'outside.png'))).toBe(false);
  });

  it('lists the files directly in a folder, with their write times, and marks a put that never finished', async () => {
    const root = tempDir('aigc-relay-files-');
    const storage = open(root);
    const before = Date.now();
    await storage.put('outputs/b/one.png', Buffer.from('1'));
    await storage.put('outputs/b/deeper/two.png', Buffer.from('2'));
    // What a crash in the middle of a put leaves: the durable writer's temporary, never renamed.
    fs.writeFileSync(path.join(root, 'outputs/b/one.png.4242-w7.tmp'), 'half');
    const listed = (await storage.list('outputs/b')).sort((a, b) => a.key.localeCompare(b.key));
    expect(listed.map(({ key, unfinishedPutOf }) => ({ key, unfinishedPutOf }))).toEqual([
      { key: 'outputs/b/one.png', unfinishedPutOf: undefined },
      { key: 'outputs/b/one.png.4242-w7.tmp', unfinishedPutOf: 'outputs/b/one.png' },
    ]);
    for (const entry of listed) expect(entry.modifiedAt).toBeGreaterThanOrEqual(before - 1000);
    expect(await storage.list('outputs/missing')).toEqual([]);
    expect(await storage.list('outputs/b/one.png')).toEqual([]); // a file, not a folder
    await expect(storage.list('../elsewhere')).rejects.toThrow(/escapes the root/);
  });

  it('close() waits for writes already made', async () => {
    const root = tempDir('aigc-relay-files-');
    const storage = createFsFileStorage(root, { writer });
    const writes = Array.from({ length: 20 }, (_, i) => storage.put(`outputs/t/${i}.png`, Buffer.from([i])));
    await storage.close();
    await Promise.all(writes);
    expect(fs.readdirSync(path.join(root, 'outputs/t')).length).toBe(20);
  });
});
