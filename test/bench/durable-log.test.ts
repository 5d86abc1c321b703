import { describe, expect, it } from 'vitest';
import { durableLog, type LogFs } from '../../bench/durable-log';

/** A file system whose writes and fdatasyncs finish only when the test says so. */
function heldFs() {
  const writes: Array<() => void> = [];
  const syncs: Array<() => void> = [];
  const fs: LogFs = {
    write: (_data, done) => writes.push(() => done(null)),
    fdatasync: (done) => syncs.push(() => done(null)),
  };
  return { fs, writes, syncs };
}

describe('the durable bare server answers only what an fdatasync covered', () => {
  it('answers after the write and an fdatasync begun after it, not before', () => {
    const { fs, writes, syncs } = heldFs();
    const append = durableLog(fs);
    const answered: string[] = [];
    append(Buffer.from('a'), () => answered.push('a'));
    expect(syncs).toHaveLength(0); // nothing to sync before the write has finished
    writes.shift()!();
    expect(syncs).toHaveLength(1);
    expect(answered).toEqual([]);
    syncs.shift()!();
    expect(answered).toEqual(['a']);
  });

  it('a body written while an fdatasync runs waits for the next one, which covers every such body', () => {
    const { fs, writes, syncs } = heldFs();
    const append = durableLog(fs);
    const answered: string[] = [];
    for (const name of ['a', 'b', 'c']) append(Buffer.from(name), () => answered.push(name));
    writes.shift()!(); // a: its fdatasync starts
    writes.shift()!(); // b and c finish writing while a's fdatasync runs
    writes.shift()!();
    expect(syncs).toHaveLength(1); // one at a time
    syncs.shift()!();
    expect(answered).toEqual(['a']); // b and c were written after that fdatasync began
    expect(syncs).toHaveLength(1); // the next one started at once, for both
    syncs.shift()!();
    expect(answered).toEqual(['a', 'b', 'c']);
    expect(syncs).toHaveLength(0);
  });
});
