import path from 'node:path';
import { DirectorySyncs, makeDirDurably, writeThenRename } from './durable-files';

/**
 * libuv's pool serves the whole process (file reads of GET /files, `dns.lookup`, uploads), and every flush holds
 * one of its threads for about a millisecond: writes leave one thread free for everything else.
 */
const POOL_SIZE = Number(process.env.UV_THREADPOOL_SIZE) || 4;
const MAX_WRITES_IN_FLIGHT = Math.max(1, POOL_SIZE - 1);

/**
 * The temporary a put writes before renaming it to `file`: `<file>.<pid>-<tag><n>.tmp`, unique per process, writer and
 * put. A crash between its creation and the rename leaves it behind (the leftover sweep removes it: `fileOfTemporary`).
 */
const temporaryOf = (file: string, tag: string, n: number): string => `${file}.${process.pid}-${tag}${n}.tmp`;
const TEMPORARY = /^(.+)\.[0-9]+-[a-z]+[0-9]+\.tmp$/;

/** The file a name made by `temporaryOf` was the temporary of; undefined for any other name. */
export const fileOfTemporary = (name: string): string | undefined => TEMPORARY.exec(name)?.[1];

/**
 * Puts that are durable when they resolve (durable-files.ts), for the file-writer thread and the inline writer
 * alike. Directories are made once: output keys share directories (app/outputs.ts), so an image costs one new
 * inode, not two, and every put into a directory waits until that directory itself is durable, also when another
 * put is still making it.
 */
export class DurableWriter {
  /** Directories made (or being made) durably, by path. */
  private readonly dirs = new Map<string, Promise<void>>();
  private readonly dirSyncs = new DirectorySyncs();
  private readonly waiting: Array<() => void> = [];
  private inFlight = 0;
  private tmpSeq = 0;

  /**
   * `tag` keeps temporary names of two writers in one process apart; lower-case letters, which `fileOfTemporary`
   * recognises.
   */
  constructor(
    private readonly tag: string,
    private readonly maxInFlight = MAX_WRITES_IN_FLIGHT,
  ) {
    if (!/^[a-z]+$/.test(tag)) throw new Error(`writer tag must be lower-case letters: ${tag}`);
  }

  async put(file: string, data: Uint8Array): Promise<void> {
    const dir = path.dirname(file);
    const made = this.dirReady(dir);
    await made;
    try {
      await this.write(file, data);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      // Removed behind our back (an operator's cleanup): make it again, once for every put that found it gone.
      if (this.dirs.get(dir) === made) this.dirs.delete(dir);
      await this.dirReady(dir);
      await this.write(file, data);
    }
    await this.dirSyncs.after(dir);
  }

  private dirReady(dir: string): Promise<void> {
    let ready = this.dirs.get(dir);
    if (!ready) {
      if (this.dirs.size >= 10_000) this.dirs.clear();
      const making = makeDirDurably(dir);
      ready = making;
      this.dirs.set(dir, making);
      // A failed flush of the parent: the next put tries again rather than trusting the directory.
      making.catch(() => this.dirs.get(dir) === making && this.dirs.delete(dir));
    }
    return ready;
  }

  private async write(file: string, data: Uint8Array): Promise<void> {
    // A slot is handed straight to the next waiter, so none is taken twice between a release and the wake-up.
    if (this.inFlight < this.maxInFlight) this.inFlight++;
    else await new Promise<void>((resolve) => this.waiting.push(resolve));
    try {
      await writeThenRename(temporaryOf(file, this.tag, ++this.tmpSeq), file, data);
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.inFlight--;
    }
  }
}
