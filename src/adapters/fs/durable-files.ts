/**
 * Writing a file so that it survives power loss, not only a crash of the process: the bytes are flushed before the
 * file is renamed into place, and the rename (a change to the directory) is flushed before anyone is told the file
 * exists. The relay marks a task succeeded only after its images are stored, so without this a power cut could
 * leave a succeeded, charged task whose image is an empty file or no file at all.
 *
 * A flush of a new file costs about 1 ms on this project's virtual disk, and they do not get cheaper in sequence;
 * the disk takes more of them at once (ext4 commits concurrent ones together), so writes run concurrently on
 * libuv's pool, and the flushes of one directory are coalesced: one in flight, the next covering every rename that
 * finished meanwhile (BENCHMARKS.md).
 */
import fs from 'node:fs';
import path from 'node:path';

/** `fs.fsync` or `fs.fdatasync` of an open descriptor as a promise: the wait happens on libuv's pool. */
function flush(fd: number, how: 'fsync' | 'fdatasync'): Promise<void> {
  return new Promise((resolve, reject) => fs[how](fd, (err) => (err ? reject(err) : resolve())));
}

/** Flushes a directory's entries (names created, renamed or removed in it). */
export async function syncDir(dir: string): Promise<void> {
  const fd = fs.openSync(dir, 'r');
  try {
    await flush(fd, 'fsync');
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * `mkdir -p` whose new directories survive power loss: each new one is flushed in its parent. New directories are
 * 0700 and files 0600 (writeThenRename) whatever the umask or the data dir's own mode: they hold every client's
 * images, and a data dir the operator made (a container volume) is often 0755.
 */
export async function makeDirDurably(dir: string): Promise<void> {
  const first = fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (first === undefined) return;
  for (let created = dir; ; created = path.dirname(created)) {
    await syncDir(path.dirname(created));
    if (created === first || path.dirname(created) === created) return;
  }
}

/**
 * Writes `data` to `tmp`, flushes it, and renames it to `file`; flushing the directory is the caller's part. The
 * open, write, close and rename are done synchronously (tens of µs into the page cache); only the flush, which
 * waits for the disk, goes to the pool: one round trip per file instead of five, and flushes of concurrent puts run
 * side by side.
 */
export async function writeThenRename(tmp: string, file: string, data: Uint8Array): Promise<void> {
  const fd = fs.openSync(tmp, 'w', 0o600);
  try {
    try {
      fs.writeFileSync(fd, data);
      await flush(fd, 'fdatasync');
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, file);
  } catch (err) {
    fs.rmSync(tmp, { force: true }); // no half-written temporary left behind
    throw err;
  }
}

/**
 * Directory flushes, coalesced: `after(dir)` resolves once a flush of `dir` that began after the call has finished
 * (a flush already running may have begun before the caller's rename, so it does not count). At most one flush per
 * directory runs; the next one serves everyone who asked while it ran.
 */
export class DirectorySyncs {
  private readonly state = new Map<string, { running: Promise<void>; next?: Promise<void> }>();

  after(dir: string): Promise<void> {
    const current = this.state.get(dir);
    if (!current) return this.start(dir);
    current.next ??= current.running.then(
      () => this.start(dir),
      () => this.start(dir),
    );
    return current.next;
  }

  private start(dir: string): Promise<void> {
    const running: Promise<void> = syncDir(dir).finally(() => {
      // Done with nobody waiting for a next flush: forget the directory. (With a next one queued, its start replaces
      // this state.)
      const current = this.state.get(dir);
      if (current?.running === running && !current.next) this.state.delete(dir);
    });
    this.state.set(dir, { running });
    return running;
  }
}
