/** The processes a benchmark run starts: the bare baseline, relays, and one load generator per measurement. */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnRelay, type RelayProcess } from '../test/helpers/child';
import { eventually } from '../test/helpers/eventually';
import type { LoadResult, LoadSpec } from './load-spec';
import { apiClient } from '../test/helpers/api';
import { PROMPT_BODY } from '../test/helpers/relay';
import { scratchDir } from './scratch-dirs';

const HERE = path.dirname(fileURLToPath(import.meta.url));

export interface Server {
  readonly url: string;
  readonly pid: number;
  stop(): Promise<unknown>;
}

export interface BareServer extends Server {
  /** Where a durable bare server writes the POSTs it answers (removed when the run exits: scratch-dirs.ts). */
  readonly durableFile?: string;
}

export interface BenchRelay extends Server {
  readonly dataDir: string;
  readonly devKey: string;
  readonly adminToken: string;
  readonly process: RelayProcess;
  kill(): Promise<unknown>;
}

/** Poll-with-deadline for output that has no event: the tests' helper, under the name the benchmarks use. */
export const until = eventually;

/** Bare Node (bench/bare-server.ts); `durable`: each POST answered once its body is written and fdatasync'd. */
export async function startBare(options: { durable?: boolean } = {}): Promise<BareServer> {
  const dir = options.durable ? scratchDir('aigc-relay-bare-') : undefined;
  const durableFile = dir && path.join(dir, 'posts.log');
  const args = durableFile ? ['--durable', durableFile] : [];
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(HERE, 'bare-server.ts'), ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  let output = '';
  child.stdout.on('data', (c: Buffer) => (output += c.toString()));
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const stop = async (signal: NodeJS.Signals = 'SIGTERM') => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    await exited;
  };
  let url: string;
  try {
    url = await until('the bare server', 15_000, () => /listening on (http:\/\/\S+)/.exec(output)?.[1]);
  } catch (error) {
    await stop('SIGKILL'); // not listening: it would never answer a SIGTERM's server.close
    throw error;
  }
  return { url, pid: child.pid!, stop: () => stop(), ...(durableFile ? { durableFile } : {}) };
}

/**
 * `aigc-relay serve` on a fresh data dir (a scratch dir: removed when the run exits, not when the relay stops), with
 * a known admin token; resolves once the dev key it prints on first start has been read.
 */
export async function startRelay(env: Record<string, string>, nodeArgs: readonly string[] = [], bin?: string): Promise<BenchRelay> {
  const dataDir = scratchDir('aigc-relay-bench-');
  const adminToken = randomBytes(24).toString('base64url');
  const relay: RelayProcess = await spawnRelay(
    { AIGC_RELAY_DATA_DIR: dataDir, AIGC_RELAY_ADMIN_TOKEN: adminToken, AIGC_RELAY_LOG_LEVEL: 'warn', ...env },
    ['serve'],
    { nodeArgs, ...(bin === undefined ? {} : { bin }) },
  );
  let devKey: string;
  try {
    devKey = await until('the dev key', 15_000, () => /\b(ar_key_[A-Za-z0-9_-]{16}\.[A-Za-z0-9_-]{43})\b/.exec(relay.output())?.[1]);
  } catch (error) {
    await relay.stop('SIGKILL'); // a failed start leaves no relay listening
    throw error;
  }
  return {
    url: relay.url,
    pid: relay.child.pid!,
    dataDir,
    devKey,
    adminToken,
    process: relay,
    stop: () => relay.stop('SIGTERM'),
    kill: () => relay.stop('SIGKILL'),
  };
}

/** CPU time a process has used so far, all threads, user + kernel, in µs (Linux /proc; clock ticks of 10 ms). */
export function cpuUs(pid: number): number {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10_000; // utime, stime (fields 14 and 15 of stat)
}

/**
 * Runs one measurement in a separate `node` process (bench/load.ts) and returns what it measured; with
 * `spec.serverPid`, also the server's CPU time per 2xx answer.
 */
export async function runLoad(spec: LoadSpec): Promise<LoadResult> {
  if (spec.serverPid === undefined) return runLoadProcess(spec);
  const before = cpuUs(spec.serverPid);
  const result = await runLoadProcess(spec);
  const answered = result.ok + (result.warmupOk ?? 0);
  return answered > 0 ? { ...result, serverCpuUsPerOk: (cpuUs(spec.serverPid) - before) / answered } : result;
}

function runLoadProcess(spec: LoadSpec): Promise<LoadResult> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(HERE, 'load.ts'), JSON.stringify(spec)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let output = '';
  child.stdout.on('data', (c: Buffer) => (output += c.toString()));
  return new Promise((resolve, reject) =>
    child.once('exit', (code) => {
      const line = output.trim().split('\n').at(-1);
      if (code !== 0 || !line) reject(new Error(`load run exited ${code}: ${output}`));
      else resolve(JSON.parse(line) as LoadResult);
    }),
  );
}

/** Resident set size of a process, from /proc (Linux). */
export function rssBytes(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = /^VmRSS:\s+(\d+)\s+kB/m.exec(status)?.[1];
  if (!kb) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(kb) * 1024;
}

/** Task counts by state, from the relay's Prometheus gauge. */
export async function taskCounts(relay: BenchRelay): Promise<Record<string, number>> {
  const text = await (await fetch(`${relay.url}/metrics`)).text();
  const counts: Record<string, number> = {};
  for (const m of text.matchAll(/^aigc_relay_tasks\{state="(\w+)"\} (\d+)/gm)) counts[m[1]!] = Number(m[2]);
  return counts;
}

/** Waits until nothing is queued or running (polled gently: each /metrics scrape counts the tasks table). */
export async function drained(relay: BenchRelay, ms: number): Promise<Record<string, number>> {
  return until(
    'the queue to drain',
    ms,
    async () => {
      const c = await taskCounts(relay);
      return (c.queued ?? 0) + (c.running ?? 0) === 0 ? c : undefined;
    },
    250,
  );
}

/** One submit through the API (a task id for the status phase), then a top-up of its account via the admin API. */
export async function prepare(relay: BenchRelay): Promise<{ taskId: string }> {
  const api = apiClient(relay.url, relay.devKey);
  const admin = apiClient(relay.url, relay.adminToken);
  const submitted = await api.post('/tencent-vod/v1/aigc-image', PROMPT_BODY);
  if (submitted.status !== 200) throw new Error(`warm-up submit failed: ${submitted.status} ${submitted.text}`);
  const taskId = submitted.body.request_id as string;
  const task = await admin.get(`/admin/v1/tasks/${taskId}`);
  // Enough credits that no phase ever meets a 402.
  const topUp = await admin.post(`/admin/v1/accounts/${task.body.account_id}/top-ups`, { amount: 1_000_000_000_000, reference: 'bench' });
  if (topUp.status !== 201) throw new Error(`top-up failed: ${topUp.status} ${topUp.text}`);
  return { taskId };
}
