/**
 * The directories a benchmark run writes in (relays' data dirs, the durable bare server's log, the disk probes),
 * removed when the run's process exits rather than when each server stops.
 *
 * Why not at once: on ext4 without a journal (this project's machines: `/proc/fs/jbd2` is empty) the kernel will not
 * reuse an inode freed in the last seconds, or minutes while its inode-table block is not yet written back, and
 * allocating a new one walks past each of them. Removing a stopped relay's tens of thousands of output files made
 * every file created in the next minute cost 300–950 µs of CPU instead of about 130 µs (docs/benchmarks-history.md,
 * session 26), which the next phase then measured as the relay's cost. A run's scratch files take some hundreds of MiB
 * of disk until it ends.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const made: string[] = [];

/** A new empty directory under the temp dir (on the repo's disk: fsync is real there), removed at process exit. */
export function scratchDir(prefix: string): string {
  if (made.length === 0) {
    process.once('exit', removeScratchDirs);
    // A run stopped by Ctrl-C or a kill would otherwise leave them all: 'exit' does not run on a signal's default end.
    for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
      process.once(signal, () => {
        removeScratchDirs();
        process.exit(code);
      });
    }
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  made.push(dir);
  return dir;
}

/** Removes every directory `scratchDir` made so far (also run at exit; removing twice is harmless). */
export function removeScratchDirs(): void {
  for (const dir of made.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
}
