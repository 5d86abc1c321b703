import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBare, type BareServer } from '../../bench/processes';
import { removeScratchDirs } from '../../bench/scratch-dirs';

/**
 * The durable baseline (bench/bare-server.ts --durable) as the bench starts it. The rule that it answers only after
 * an fdatasync covering the body is tested in durable-log.test.ts (here the write would usually win the race
 * anyway); this checks the wiring: bodies go to the file, GETs write nothing, the file stays until the run's scratch
 * directories are removed (bench/scratch-dirs.ts: not as each server stops, so no phase pays for another's clean-up).
 */
/** The start of the file, where the bodies go first (the file is written in full beforehand, 64 MiB of zeros). */
function head(file: string): string {
  const fd = fs.openSync(file, 'r');
  try {
    const buffer = Buffer.alloc(64 * 1024);
    return buffer.subarray(0, fs.readSync(fd, buffer, 0, buffer.length, 0)).toString('latin1');
  } finally {
    fs.closeSync(fd);
  }
}

describe('the durable bare server', () => {
  let server: BareServer;
  beforeAll(async () => {
    server = await startBare({ durable: true });
  }, 30_000);
  afterAll(async () => {
    await server?.stop();
  });

  it('has every POST body in its file when the POST is answered', async () => {
    const bodies = Array.from({ length: 40 }, (_, i) => JSON.stringify({ n: i, marker: `post-${i}-${Math.random()}` }));
    const seenAtAnswer = await Promise.all(
      bodies.map(async (body) => {
        const response = await fetch(`${server.url}/post`, { method: 'POST', body, headers: { 'content-type': 'application/json' } });
        expect(response.status).toBe(200);
        await response.json();
        // Read the moment this answer arrived: the body must already be there.
        return head(server.durableFile!).includes(body);
      }),
    );
    expect(seenAtAnswer).toEqual(bodies.map(() => true));
  });

  it('answers a GET without writing anything', async () => {
    const before = head(server.durableFile!);
    const response = await fetch(`${server.url}/get`);
    expect(response.status).toBe(200);
    await response.text();
    expect(head(server.durableFile!)).toBe(before);
  });

  // Last: removing the scratch directories also takes the running server's file away.
  it('keeps its file when stopped, until the scratch directories are removed', async () => {
    const other = await startBare({ durable: true });
    expect(fs.existsSync(other.durableFile!)).toBe(true);
    await other.stop();
    expect(fs.existsSync(other.durableFile!)).toBe(true);
    removeScratchDirs();
    expect(fs.existsSync(other.durableFile!)).toBe(false);
  }, 30_000);
});
