/**
 * Writing a file so that it survives power loss, not only a crash of the process: the bytes are flushed before the
 * file is renamed into place, and the rename (a change to the directory) is flushed before anyone is told the file
 * exists. The relay marks a task succeeded only after its images are stored, so without this a power cut could
 * leave a succeeded, charged task whose image is an empty file or no file at all.
 *
 * The synchronous forms serve the file-writer thread; the promise forms the inline writer.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';

/** Flushes a directory's entries (names created, renamed or removed in it). */
export function syncDirSync(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** `mkdir -p` whose new directories survive power loss: each new one's parent is flushed. */
export function makeDirDurablySync(dir: string): void {
  const first = fs.mkdirSync(dir, { recursive: true });
  if (first === undefined) return;
  for (let created = dir; ; created = path.dirname(created)) {
    syncDirSync(path.dirname(created));
    if (created === first || path.dirname(created) === created) return;
  }
}

/** Writes `data` to `tmp` and flushes it, then renames it to `file`. The caller flushes the directory. */
export function writeThenRenameSync(tmp: string, file: string, data: Uint8Array): void {
  const fd = fs.openSync(tmp, 'w');
  try {
    fs.writeFileSync(fd, data);
    fs.fdatasyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
}

export async function syncDir(dir: string): Promise<void> {
  const handle = await fsp.open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** The promise form of makeDirDurablySync, writeThenRenameSync and the directory flush, in one. */
export async function writeDurably(tmp: string, file: string, data: Uint8Array): Promise<void> {
  const dir = path.dirname(file);
  const first = await fsp.mkdir(dir, { recursive: true });
  if (first !== undefined) {
    for (let created = dir; ; created = path.dirname(created)) {
      await syncDir(path.dirname(created));
      if (created === first || path.dirname(created) === created) break;
    }
  }
  const handle = await fsp.open(tmp, 'w');
  try {
    await handle.writeFile(data);
    await handle.datasync();
  } finally {
    await handle.close();
  }
  await fsp.rename(tmp, file);
  await syncDir(dir);
}
