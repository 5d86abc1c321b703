/**
 * Lets each key through at most once per `windowMs`: the runtime's warnings of failed follow-up calls, keyed by
 * channel and upstream error code (runtime.ts warnOf). The codes are the upstream's to choose, so the keys are
 * unbounded (a broken or hostile endpoint can answer a new one at every call), and a map of every key ever seen would
 * grow for as long as the process runs. Only keys let through within the window are kept, since an older one holds
 * nothing back, and at most `maxKeys` of them: past that the oldest is forgotten and may be let through again within
 * its window. A flood of distinct codes is then logged more than once a minute, which is what it deserves.
 */
export class OncePerWindow {
  /** When each key was last let through, oldest first (a key let through again moves to the end). */
  private readonly last = new Map<string, number>();

  constructor(
    private readonly windowMs: number,
    private readonly maxKeys: number,
  ) {}

  /** True when `key` was not let through within the window before `now` (it is now). */
  admit(key: string, now: number): boolean {
    const last = this.last.get(key);
    if (last !== undefined && now - last < this.windowMs) return false;
    this.last.delete(key);
    this.last.set(key, now);
    // Oldest first, so the loop stops at the first key still within its window once the bound is kept: each key is
    // dropped once, and a call costs what it drops.
    for (const [oldKey, at] of this.last) {
      if (this.last.size <= this.maxKeys && now - at < this.windowMs) break;
      this.last.delete(oldKey);
    }
    return true;
  }

  /** Keys kept right now (for tests and metrics). */
  get trackedKeys(): number {
    return this.last.size;
  }
}
