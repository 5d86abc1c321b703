/**
 * Tencent VOD upstream under load: `node --import tsx bench/tencent-inflight.ts`
 *
 * A real `aigc-relay serve` process (default adapter timings) against the loopback Tencent protocol server
 * (test/tencent/server.ts, signatures verified) in this process. Four channels × 250 = 1,000 upstream slots;
 * 1,100 tasks are submitted, so 1,000 run upstream and 100 wait in the relay's own queue. Every task is followed
 * by a client over SSE (`GET /tencent-vod/v1/requests/{id}/events`). Then the "upstream" finishes its tasks at a
 * steady rate, and for each one the script measures upstream finish → the client receiving the `result` event
 * (same process, same clock). Run twice: channels polling only, and channels with PullEvents.
 *
 *   BENCH_TASKS=1100 BENCH_CHANNELS=4 BENCH_SLOTS=250 BENCH_FINISH_RATE=200 node --import tsx bench/tencent-inflight.ts
 *
 * Asserted in the output (exit 1 otherwise): every task succeeded, and no channel ever had more upstream tasks
 * than its max_concurrency.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { apiClient } from '../test/helpers/api';
import { spawnRelay } from '../test/helpers/child';
import { waitUntil } from '../test/helpers/eventually';
import { PROMPT_BODY } from '../test/helpers/relay';
import { TencentTestServer, type Account } from '../test/tencent/server';

const TASKS = Number(process.env.BENCH_TASKS ?? 1100);
const CHANNELS = Number(process.env.BENCH_CHANNELS ?? 4);
const SLOTS = Number(process.env.BENCH_SLOTS ?? 250);
const FINISH_RATE = Number(process.env.BENCH_FINISH_RATE ?? 200);
const ADMIN_TOKEN = randomBytes(24).toString('base64url');

const log = (line: string) => process.stderr.write(`[tencent-bench] ${line}\n`);
const now = () => performance.now();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

/** Opens the task's SSE stream and resolves with the moment its `result` event arrives. */
async function resultArrival(url: string, key: string, id: string): Promise<number> {
  const res = await fetch(`${url}/tencent-vod/v1/requests/${id}/events`, { headers: { authorization: `Bearer ${key}` } });
  if (!res.ok || !res.body) throw new Error(`SSE for ${id}: HTTP ${res.status}`);
  const decoder = new TextDecoder();
  let text = '';
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    text += decoder.decode(chunk, { stream: true });
    const at = text.indexOf('event: result');
    if (at >= 0) {
      const mark = now();
      const data = /data: (.*)\n/.exec(text.slice(at))?.[1];
      if (!data || JSON.parse(data).outcome !== 'succeeded') {
        const detail = await apiClient(url, ADMIN_TOKEN).get(`/admin/v1/tasks/${id}`);
        throw new Error(`task ${id} did not succeed: ${data}\n${JSON.stringify(detail.body.logs ?? detail.body, null, 1)}`);
      }
      return mark;
    }
  }
  throw new Error(`SSE for ${id} ended without a result`);
}

interface ModeResult {
  readonly mode: string;
  readonly latencies: number[];
  /** Upstream finish → the relay committed the result (relay clock vs this process's, both Date.now on one host). */
  readonly toCommit: number[];
  readonly maxInFlight: number[];
  readonly queuedWhileFull: number;
  readonly describeCalls: number;
  readonly pullCalls: number;
  readonly seconds: number;
}

async function runMode(events: boolean): Promise<ModeResult> {
  const mode = events ? 'events (PullEvents + polling as safety net)' : 'polling only';
  const accounts: Account[] = Array.from({ length: CHANNELS }, (_, i) => ({
    secretId: `AKIDbench${i}${randomBytes(4).toString('hex')}`,
    secretKey: randomBytes(20).toString('base64url'),
    subAppId: 1_600_000_000 + i,
  }));
  const server = await TencentTestServer.start({ accounts, pullWaitMs: 5000 });
  server.onCreate = () => ({ kind: 'accept', plan: { processingPolls: Infinity } });
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'aigc-relay-tencent-bench-'));
  const relay = await spawnRelay(
    { AIGC_RELAY_DATA_DIR: dataDir, AIGC_RELAY_ADMIN_TOKEN: ADMIN_TOKEN, AIGC_RELAY_LOG_LEVEL: 'error', AIGC_RELAY_ALLOW_PRIVATE_URLS: '127.0.0.1' },
    ['serve'],
    process.env.BENCH_PROFILE_DIR ? { nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_PROFILE_DIR}`] } : {},
  );
  try {
    const admin = apiClient(relay.url, ADMIN_TOKEN);
    const account = await admin.post('/admin/v1/accounts', { name: 'bench', balance: 1_000_000_000 });
    const key = (await admin.post(`/admin/v1/accounts/${account.body.id}/keys`, { name: 'bench' })).body.key as string;
    for (const a of accounts) {
      const res = await admin.post('/admin/v1/channels', {
        provider: 'tencent-vod',
        name: a.secretId,
        secret_id: a.secretId,
        secret_key: a.secretKey,
        sub_app_id: a.subAppId,
        endpoint: server.url,
        max_concurrency: SLOTS,
        events_enabled: events,
      });
      if (res.status !== 201) throw new Error(`channel: ${res.status} ${res.text}`);
    }
    const api = apiClient(relay.url, key);
    const started = now();
    log(`${mode}: submitting ${TASKS} tasks`);
    const ids: string[] = [];
    for (let i = 0; i < TASKS; i += 50) {
      const batch = await Promise.all(Array.from({ length: Math.min(50, TASKS - i) }, () => api.post('/tencent-vod/v1/aigc-image', PROMPT_BODY)));
      for (const res of batch) {
        if (res.status !== 200) throw new Error(`submit: ${res.status} ${res.text}`);
        ids.push(res.body.request_id as string);
      }
    }
    const arrivals = new Map(ids.map((id) => [id, resultArrival(relay.url, key, id)] as const));
    const capacity = CHANNELS * SLOTS;
    const inFlight = () => accounts.reduce((n, a) => n + server.stats(a.secretId).inFlight, 0);
    await waitUntil(() => inFlight() === Math.min(capacity, TASKS), 120_000, 'every upstream slot to fill');
    const queued = (await admin.get('/admin/v1/tasks?status=queued&limit=1000')).body.tasks.length as number;
    log(`${mode}: ${inFlight()} tasks in flight upstream, ${queued} waiting in the relay queue`);

    // The upstream finishes tasks at a steady rate, oldest-created first, until all are done.
    const finishedAt = new Map<string, number>();
    const interval = 1000 / FINISH_RATE;
    let next = now();
    while (finishedAt.size < TASKS) {
      const candidate = [...server.tasks.values()].find((t) => t.status === 'PROCESSING');
      if (!candidate) {
        await sleep(5);
        continue;
      }
      const wait = next - now();
      if (wait > 0) await sleep(wait);
      server.finish(candidate.taskId);
      finishedAt.set(candidate.sessionId, candidate.finishedMark!);
      next += interval;
    }
    const latencies: number[] = [];
    for (const [id, arrival] of arrivals) latencies.push((await arrival) - finishedAt.get(id)!);
    latencies.sort((a, b) => a - b);
    const toCommit: number[] = [];
    const finishedWall = new Map([...server.tasks.values()].map((t) => [t.sessionId, t.finishedAt!] as const));
    for (let i = 0; i < ids.length; i += 100) {
      const tasks = await Promise.all(ids.slice(i, i + 100).map((id) => admin.get(`/admin/v1/tasks/${id}`)));
      for (const { body: task } of tasks) toCommit.push(Date.parse(task.finished_at) - finishedWall.get(task.id)!);
    }
    toCommit.sort((a, b) => a - b);
    return {
      mode,
      latencies,
      toCommit,
      maxInFlight: accounts.map((a) => server.stats(a.secretId).maxInFlight),
      queuedWhileFull: queued,
      describeCalls: server.count('DescribeTaskDetail'),
      pullCalls: server.count('PullEvents'),
      seconds: (now() - started) / 1000,
    };
  } finally {
    await relay.stop('SIGTERM');
    await server.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

const results: ModeResult[] = [];
const modes = process.env.BENCH_MODES ? process.env.BENCH_MODES.split(',').map((m) => m === 'events') : [false, true];
for (const events of modes) results.push(await runMode(events));

let failed = false;
const ms = (n: number) => `${Math.round(n)} ms`;
console.log(`\nTencent VOD upstream: ${TASKS} tasks, ${CHANNELS} channels × max_concurrency ${SLOTS}, upstream finishing ${FINISH_RATE}/s`);
console.log(`node ${process.version}, ${os.cpus().length} CPU(s), ${os.cpus()[0]?.model ?? ''}\n`);
console.log('upstream finish → client sees the result (SSE)');
console.log('mode'.padEnd(46) + 'p50'.padStart(9) + 'p90'.padStart(9) + 'p99'.padStart(9) + 'max'.padStart(9) + '  DescribeTaskDetail  PullEvents');
for (const r of results) {
  const l = r.latencies;
  console.log(
    r.mode.padEnd(46) +
      ms(percentile(l, 50)).padStart(9) +
      ms(percentile(l, 90)).padStart(9) +
      ms(percentile(l, 99)).padStart(9) +
      ms(l[l.length - 1] ?? NaN).padStart(9) +
      String(r.describeCalls).padStart(20) +
      String(r.pullCalls).padStart(12),
  );
}
console.log('\nof which upstream finish → result committed in the relay (wall clock, ms resolution)');
for (const r of results) {
  const c = r.toCommit;
  console.log(r.mode.padEnd(46) + ms(percentile(c, 50)).padStart(9) + ms(percentile(c, 90)).padStart(9) + ms(percentile(c, 99)).padStart(9) + ms(c[c.length - 1] ?? NaN).padStart(9));
}
console.log('');
for (const r of results) {
  const over = r.maxInFlight.filter((n) => n > SLOTS);
  const verdict = over.length === 0 ? 'OK' : 'EXCEEDED';
  if (over.length > 0 || r.latencies.length !== TASKS) failed = true;
  console.log(
    `${r.mode}: max upstream in flight per channel ${r.maxInFlight.join('/')} (limit ${SLOTS}) ${verdict}; ` +
      `${r.queuedWhileFull} tasks waited in the relay queue while all slots were taken; ${r.latencies.length}/${TASKS} succeeded; ${r.seconds.toFixed(1)} s`,
  );
}
const within2s = results.map((r) => `${r.mode}: ${((100 * r.latencies.filter((x) => x <= 2000).length) / r.latencies.length).toFixed(1)}% within 2 s`);
console.log(within2s.join('\n'));
if (failed) {
  console.log('\nFAILED: a channel exceeded its concurrency or a task did not succeed');
  process.exitCode = 1;
}
