/**
 * The floor under any durable commit on this disk: how long write + fdatasync of one 4 KiB page takes, in the
 * directory the relays keep their databases in. A submit that is on disk before its 200 cannot be faster than this.
 */
import fs from 'node:fs';
import path from 'node:path';
import { scratchDir } from './scratch-dirs';
import { percentile } from './stats';

export function measureFsync(samples = 300): { p50: number; p99: number } {
  const dir = scratchDir('aigc-relay-fsync-');
  const fd = fs.openSync(path.join(dir, 'probe'), 'w');
  const page = Buffer.alloc(4096, 1);
  const times: number[] = [];
  try {
    // The page is overwritten in place: a flush that also had to record a longer file would cost more than any
    // commit of a WAL that SQLite rewrites in place.
    fs.writeSync(fd, page, 0, page.length, 0);
    fs.fsyncSync(fd);
    for (let i = 0; i < samples; i++) {
      const t = process.hrtime.bigint();
      fs.writeSync(fd, page, 0, page.length, 0);
      fs.fdatasyncSync(fd);
      times.push(Number(process.hrtime.bigint() - t) / 1e6);
    }
  } finally {
    fs.closeSync(fd);
  }
  times.sort((a, b) => a - b);
  return { p50: percentile(times, 0.5), p99: percentile(times, 0.99) };
}

/**
 * The floor under storing an output image: the CPU time (user + kernel, this process) of creating a small file
 * the way the relay does (a temporary name, write, fdatasync, rename into place), one after another. On this
 * project's virtual disk the kernel's part of creating a file dominates, and it is paid once per image: at a fixed
 * 1,000 tasks a second it is this many ms of CPU every second, on a machine with two cores to share.
 */
export function measureFileCreate(samples = 200): { cpuUsPerFile: number; wallMsP50: number } {
  const dir = scratchDir('aigc-relay-files-');
  const data = Buffer.alloc(3000, 1); // about the size of an instant-provider image
  const times: number[] = [];
  const cpu = process.cpuUsage();
  // The files stay until the run exits (scratch-dirs.ts): removing them here would slow the next phase's.
  for (let i = 0; i < samples; i++) {
    const t = process.hrtime.bigint();
    const file = path.join(dir, `f${i}`);
    const fd = fs.openSync(`${file}.tmp`, 'w');
    fs.writeFileSync(fd, data);
    fs.fdatasyncSync(fd);
    fs.closeSync(fd);
    fs.renameSync(`${file}.tmp`, file);
    times.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  const used = process.cpuUsage(cpu);
  times.sort((a, b) => a - b);
  return { cpuUsPerFile: (used.user + used.system) / samples, wallMsP50: percentile(times, 0.5) };
}
