/**
 * Checkouts of the relay side by side on one measured path: is a change faster? On this shared machine two runs a
 * minute apart differ by ±15%, so one relay per checkout runs at once and the rounds alternate between them (and
 * reverse their order every other round); what is compared is CPU per answer, which a neighbour taking a core
 * hardly moves, beside the throughput.
 *
 *   node --import tsx bench/ab.ts [--path=alone|status|paced] [--rate=1000] [--rounds=8] [--seconds=5] <checkout> …
 *
 * A checkout is a directory holding bin/aigc-relay.js (a git worktree of the commit to measure, with node_modules),
 * optionally followed by settings for its relay: `dir@NAME=value,NAME=value` (the same checkout twice with different
 * environments, e.g. `.@NODE_OPTIONS=--max-semi-space-size=64`).
 * `alone`: the submit path with nothing running (the bench's submit ratio); `status`: GET of a finished task's status;
 * `paced`: submits at a fixed rate (1,000/s) with the instant provider running every task; a round's CPU is counted
 * until its tasks have all finished, so it is CPU per task end to end, and a relay that fell behind does not drain
 * its backlog during the next relay's round.
 * Prints per round and the means; asserts nothing.
 */
import path from 'node:path';
import fs from 'node:fs';
import { PROMPT_BODY } from '../test/helpers/relay';
import type { LoadResult, LoadSpec } from './load-spec';
import { drained, prepare, runLoad, startRelay, type BenchRelay } from './processes';

const arg = (name: string, fallback: string) => process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1] ?? fallback;
const PATH = arg('path', 'alone');
const ROUNDS = Number(arg('rounds', '8'));
const SECONDS = Number(arg('seconds', '5'));
const RATE = Number(arg('rate', '1000'));
const CHECKOUTS = process.argv.slice(2).filter((a) => !a.startsWith('--'));
const SUBMIT = '/tencent-vod/v1/aigc-image';
const BASE = { UV_THREADPOOL_SIZE: '16', AIGC_RELAY_MAX_QUEUED: '10000000' };
const ENV =
  PATH === 'paced'
    ? { ...BASE, AIGC_RELAY_INSTANT_PROVIDER: '1' }
    : // The bench's stuck provider: every submit stays queued, so only the submit path runs.
      { ...BASE, AIGC_RELAY_PREVIEW_DELAY_MS: '600000', AIGC_RELAY_PREVIEW_CONCURRENCY: '1' };

/**
 * CPU µs of each thread of a process, by name and thread id (Node names its worker threads and libuv's pool alike,
 * so the id tells the SQLite writer from the file writer; both start before the load, in the same order each time).
 */
function threadCpu(pid: number): Map<string, number> {
  const byName = new Map<string, number>();
  for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const name = tid === String(pid) ? 'main' : `${stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'))}+${Number(tid) - pid}`;
      const fields = stat.split(') ')[1]!.split(' ');
      byName.set(name, (byName.get(name) ?? 0) + (Number(fields[11]) + Number(fields[12])) * 10_000);
    } catch {
      // a thread that ended between the listing and the read
    }
  }
  return byName;
}

async function loadSpec(relay: BenchRelay): Promise<LoadSpec> {
  const { taskId } = await prepare(relay);
  const auth = { authorization: `Bearer ${relay.devKey}` };
  return PATH === 'status'
    ? { url: `${relay.url}/tencent-vod/v1/requests/${taskId}/status`, method: 'GET', headers: auth, connections: 50, serverPid: relay.pid }
    : {
        url: `${relay.url}${SUBMIT}`,
        method: 'POST',
        body: JSON.stringify(PROMPT_BODY),
        headers: { 'content-type': 'application/json', ...auth },
        connections: 50,
        serverPid: relay.pid,
        ...(PATH === 'paced' ? { pacedRate: RATE } : {}),
      };
}

interface Round {
  readonly result: LoadResult;
  readonly threads: Map<string, number>;
}

async function measure(relay: BenchRelay, spec: LoadSpec, warmup: boolean): Promise<Round> {
  const before = threadCpu(relay.pid);
  const result = await runLoad({ ...spec, durationSeconds: SECONDS, warmupSeconds: warmup ? 2 : 0 });
  if (PATH === 'paced') await drained(relay, 120_000);
  const after = threadCpu(relay.pid);
  const answered = result.ok + (result.warmupOk ?? 0);
  const cpu = [...after.values()].reduce((a, b) => a + b, 0) - [...before.values()].reduce((a, b) => a + b, 0);
  const threads = new Map([...after].map(([name, us]) => [name, (us - (before.get(name) ?? 0)) / answered]));
  // (runLoad's own figure stops at the last answer; this one includes the drain.)
  return { result: { ...result, serverCpuUsPerOk: cpu / answered }, threads };
}

async function main(): Promise<void> {
  if (CHECKOUTS.length < 1) throw new Error('usage: bench/ab.ts [--path=alone|status] [--rounds=N] [--seconds=S] <checkout>…');
  const arms = CHECKOUTS.map((arm) => {
    const [dir, settings] = arm.split('@') as [string, string | undefined];
    const env = Object.fromEntries((settings ? settings.split(',') : []).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
    return { bin: path.resolve(dir, 'bin/aigc-relay.js'), env };
  });
  const relays: BenchRelay[] = [];
  try {
    for (const arm of arms) relays.push(await startRelay({ ...ENV, ...arm.env }, [], arm.bin));
    const specs = await Promise.all(relays.map(loadSpec));
    const rounds: Round[][] = relays.map(() => []);
    for (let i = 0; i < ROUNDS; i++) {
      const order = relays.map((_, j) => j);
      if (i % 2 === 1) order.reverse();
      for (const j of order) {
        const r = await measure(relays[j]!, specs[j]!, i === 0);
        rounds[j]!.push(r);
        const top = [...r.threads].filter(([, us]) => us >= 1).map(([n, us]) => `${n} ${us.toFixed(1)}`).join(', ');
        const { p50, p99 } = r.result.latencyMs;
        process.stderr.write(
          `round ${i + 1} ${CHECKOUTS[j]}: ${r.result.rps.toFixed(0)}/s, p50 ${p50.toFixed(2)} p99 ${p99.toFixed(2)} ms, ${r.result.serverCpuUsPerOk!.toFixed(1)} µs per 2xx (${top}); codes ${JSON.stringify(r.result.statusCodes)}\n`,
        );
      }
    }
    const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;
    console.log(`\n${PATH}, ${ROUNDS} rounds of ${SECONDS} s`);
    for (const [j, dir] of CHECKOUTS.entries()) {
      const rs = rounds[j]!;
      const cpu = rs.map((r) => r.result.serverCpuUsPerOk!);
      const names = [...new Set(rs.flatMap((r) => [...r.threads.keys()]))];
      const threads = names
        .map((n) => [n, mean(rs.map((r) => r.threads.get(n) ?? 0))] as const)
        .filter(([, us]) => us >= 1)
        .map(([n, us]) => `${n} ${us.toFixed(1)}`)
        .join(', ');
      console.log(`${dir}: ${mean(cpu).toFixed(1)} µs per 2xx (rounds ${cpu.map((c) => c.toFixed(1)).join(' ')}), ${mean(rs.map((r) => r.result.rps)).toFixed(0)}/s; threads: ${threads}`);
    }
  } finally {
    await Promise.all(relays.map((r) => r.stop()));
  }
}

await main();
