import path from 'node:path';
import { DirectorySyncs, makeDirDurably, writeThenRename } from './durable-files';

/**
 * Puts that are durable when they resolve (durable-files.ts), for the file-writer thread and the inline writer
 * alike. Directories known to exist are not made again: output keys share directories (app/outputs.ts), so an
 * image costs one new inode, not two.
 */
export class DurableWriter {
  private readonly knownDirs = new Set<string>();
  private readonly dirSyncs = new DirectorySyncs();
  private tmpSeq = 0;

  /** `tag` keeps temporary names of two writers in one process apart. */
  constructor(private readonly tag: string) {}

  async put(file: string, data: Uint8Array): Promise<void> {
    const dir = path.dirname(file);
    const tmp = `${file}.${process.pid}-${this.tag}${++this.tmpSeq}.tmp`;
    if (this.knownDirs.has(dir)) {
      try {
        await writeThenRename(tmp, file, data);
        return await this.dirSyncs.after(dir);
      } catch (err) {
        // Removed behind our back (an operator's cleanup): forget it and make it again below.
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        this.knownDirs.delete(dir);
      }
    }
    await makeDirDurably(dir);
    if (this.knownDirs.size >= 10_000) this.knownDirs.clear();
    this.knownDirs.add(dir);
    await writeThenRename(tmp, file, data);
    await this.dirSyncs.after(dir);
  }
}
