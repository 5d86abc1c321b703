import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBare, type BareServer } from '../../bench/processes';

/**
 * The durable baseline (bench/bare-server.ts --durable) as the bench starts it. The rule that it answers only after
 * an fdatasync covering the body is tested in durable-log.test.ts (here the write would usually win the race
 * anyway); this checks the wiring: bodies go to the file, GETs write nothing, the file goes with the server.
 */
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
        return fs.readFileSync(server.durableFile!, 'utf8').includes(body);
      }),
    );
    expect(seenAtAnswer).toEqual(bodies.map(() => true));
  });

  it('answers a GET without writing anything', async () => {
    const before = fs.statSync(server.durableFile!).size;
    const response = await fetch(`${server.url}/get`);
    expect(response.status).toBe(200);
    expect(fs.statSync(server.durableFile!).size).toBe(before);
  });

  it('removes its file when stopped', async () => {
    const other = await startBare({ durable: true });
    expect(fs.existsSync(other.durableFile!)).toBe(true);
    await other.stop();
    expect(fs.existsSync(other.durableFile!)).toBe(false);
  }, 30_000);
});
