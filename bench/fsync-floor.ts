/**
 * The floor under any durable commit on this disk: how long write + fdatasync of one 4 KiB page takes, in the
 * directory the relays keep their databases in. A submit that is on disk before its 200 cannot be faster than this.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { percentile } from './stats';

export function measureFsync(samples = 300): { p50: number; p99: number } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aigc-relay-fsync-'));
  const fd = fs.openSync(path.join(dir, 'probe'), 'w');
  const page = Buffer.alloc(4096, 1);
  const times: number[] = [];
  try {
    for (let i = 0; i < samples; i++) {
      const t = process.hrtime.bigint();
      fs.writeSync(fd, page);
      fs.fdatasyncSync(fd);
      times.push(Number(process.hrtime.bigint() - t) / 1e6);
    }
  } finally {
    fs.closeSync(fd);
    fs.rmSync(dir, { recursive: true, force: true });
  }
  times.sort((a, b) => a - b);
  return { p50: percentile(times, 0.5), p99: percentile(times, 0.99) };
}
