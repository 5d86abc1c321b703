/**
 * SQLite against PostgreSQL, side by side: submit throughput (as fast as the relay answers) and enqueue→dispatch
 * latency (at a fixed offered rate, so the queue stays short and the figure is the wake-up path, not a backlog).
 * PostgreSQL is measured with one node and with two nodes on one database (load split across both), on a fresh
 * database that is dropped afterwards. Skipped, with the reason, when no PostgreSQL answers.
 *
 *   node --import tsx bench/postgres.ts          (on its own; BENCH_SECONDS, BENCH_CONNECTIONS as for npm run bench)
 *   import { benchStores, printStoreTable } from './postgres'   (from bench/run.ts)
 *
 * The provider is the instant stand-in, so the store and the queue are what is measured.
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { apiClient } from '../test/helpers/api';
import { spawnRelay, type RelayProcess } from '../test/helpers/child';
import { createTestDatabase, postgresUnavailable } from '../test/helpers/postgres';
import { PROMPT_BODY } from '../test/helpers/relay';
import type { LoadResult, LoadSpec } from './load-spec';
import { runLoad, until } from './processes';
import { scratchDir } from './scratch-dirs';
import { percentile } from './stats';

export interface StoreBenchOptions {
  readonly seconds: number;
  readonly connections: number;
  readonly warmupSeconds: number;
  /** Offered submits per second for the dispatch-latency phase. */
  readonly fixedRate: number;
  readonly log?: (line: string) => void;
}

export interface StoreBenchRow {
  readonly store: string;
  readonly nodes: number;
  /** Submits per second as fast as the relay(s) answer, summed over nodes; latency of the first node's load. */
  readonly submit: { readonly rps: number; readonly p50: number; readonly p99: number; readonly errors: number };
  /** created_at → started_at of tasks submitted at `fixedRate`, in ms. */
  readonly dispatch: { readonly p50: number; readonly p99: number; readonly max: number; readonly n: number };
}

export interface StoreBenchResult {
  readonly rows: StoreBenchRow[];
  /** Why PostgreSQL was not measured, when it was not. */
  readonly skipped?: string;
}

const SUBMIT = '/tencent-vod/v1/aigc-image';

interface Cluster {
  readonly urls: string[];
  readonly key: string;
  readonly adminToken: string;
  stop(): Promise<void>;
}

/** `nodes` relays on one store (the first one bootstraps), and a funded key made through the admin API. */
async function startCluster(env: Record<string, string>, nodes: number): Promise<Cluster> {
  const dataDir = scratchDir('aigc-relay-bench-store-');
  const adminToken = randomBytes(24).toString('base64url');
  const common = {
    ...env,
    AIGC_RELAY_DATA_DIR: dataDir,
    AIGC_RELAY_ADMIN_TOKEN: adminToken,
    AIGC_RELAY_SECRET: randomBytes(32).toString('base64url'),
    AIGC_RELAY_INSTANT_PROVIDER: '1',
    AIGC_RELAY_MAX_QUEUED: '10000000',
    AIGC_RELAY_LOG_LEVEL: 'warn',
  };
  const procs: RelayProcess[] = [];
  try {
    for (let i = 0; i < nodes; i++) procs.push(await spawnRelay({ ...common, AIGC_RELAY_NODE_ID: `bench-${i}` }));
    const admin = apiClient(procs[0]!.url, adminToken);
    const account = await admin.post('/admin/v1/accounts', { name: 'bench', balance: 1_000_000_000_000 });
    if (account.status !== 201) throw new Error(`account: ${account.status} ${account.text}`);
    const key = await admin.post(`/admin/v1/accounts/${account.body.id}/keys`, { name: 'bench' });
    if (key.status !== 201) throw new Error(`key: ${key.status} ${key.text}`);
    return {
      urls: procs.map((p) => p.url),
      key: key.body.key as string,
      adminToken,
      async stop() {
        await Promise.all(procs.map((p) => p.stop('SIGTERM')));
      },
    };
  } catch (err) {
    await Promise.all(procs.map((p) => p.stop('SIGKILL')));
    throw err;
  }
}

async function idle(cluster: Cluster): Promise<void> {
  await until(
    'the queue to drain',
    120_000,
    async () => {
      const text = await (await fetch(`${cluster.urls[0]}/metrics`)).text();
      const count = (state: string) => Number(new RegExp(`^aigc_relay_tasks\\{state="${state}"\\} (\\d+)`, 'm').exec(text)?.[1] ?? 0);
      return count('queued') + count('running') === 0 ? true : undefined;
    },
    250,
  );
}

async function measure(store: string, cluster: Cluster, o: StoreBenchOptions): Promise<StoreBenchRow> {
  const spec = (url: string, extra: Partial<LoadSpec> = {}): LoadSpec => ({
    url: `${url}${SUBMIT}`,
    method: 'POST',
    body: JSON.stringify(PROMPT_BODY),
    headers: { 'content-type': 'application/json', authorization: `Bearer ${cluster.key}` },
    connections: Math.max(1, Math.round(o.connections / cluster.urls.length)),
    durationSeconds: o.seconds,
    warmupSeconds: o.warmupSeconds,
    ...extra,
  });
  const label = `${store}${cluster.urls.length > 1 ? ` ×${cluster.urls.length} nodes` : ''}`;
  o.log?.(`${label}: submit…`);
  const loads: LoadResult[] = await Promise.all(cluster.urls.map((url) => runLoad(spec(url))));
  const submit = {
    rps: loads.reduce((sum, l) => sum + l.rps, 0),
    p50: loads[0]!.latencyMs.p50,
    p99: loads[0]!.latencyMs.p99,
    errors: loads.reduce((sum, l) => sum + l.errors + Object.entries(l.statusCodes).filter(([c]) => !c.startsWith('2')).reduce((s, [, n]) => s + n, 0), 0),
  };
  await idle(cluster);

  o.log?.(`${label}: enqueue→dispatch at ${o.fixedRate}/s…`);
  const since = Date.now();
  await Promise.all(
    cluster.urls.map((url) => runLoad(spec(url, { pacedRate: o.fixedRate / cluster.urls.length, connections: 10, warmupSeconds: 0 }))),
  );
  await idle(cluster);
  const admin = apiClient(cluster.urls[0]!, cluster.adminToken);
  const { tasks } = (await admin.get('/admin/v1/tasks?limit=1000')).body as { tasks: Array<{ created_at: string; started_at: string | null }> };
  const waits = tasks
    .filter((t) => Date.parse(t.created_at) >= since && t.started_at !== null)
    .map((t) => Date.parse(t.started_at!) - Date.parse(t.created_at))
    .sort((a, b) => a - b);
  const dispatch = { p50: percentile(waits, 0.5), p99: percentile(waits, 0.99), max: waits.at(-1) ?? NaN, n: waits.length };
  o.log?.(`${label}: ${submit.rps.toFixed(0)} submits/s; dispatch p50 ${dispatch.p50} ms, p99 ${dispatch.p99} ms`);
  return { store, nodes: cluster.urls.length, submit, dispatch };
}

async function run(store: string, env: Record<string, string>, nodes: number, o: StoreBenchOptions): Promise<StoreBenchRow> {
  const cluster = await startCluster(env, nodes);
  try {
    return await measure(store, cluster, o);
  } finally {
    await cluster.stop();
  }
}

/** Measures SQLite (one node) and PostgreSQL (one node, then two on one database). */
export async function benchStores(o: StoreBenchOptions): Promise<StoreBenchResult> {
  const rows: StoreBenchRow[] = [await run('sqlite', {}, 1, o)];
  const skipped = await postgresUnavailable();
  if (skipped) {
    o.log?.(`postgres not measured: ${skipped}`);
    return { rows, skipped };
  }
  for (const nodes of [1, 2]) {
    const db = await createTestDatabase('relay_bench');
    try {
      rows.push(await run('postgres', { AIGC_RELAY_DATABASE_URL: db.url }, nodes, o));
    } finally {
      await db.drop();
    }
  }
  return { rows };
}

export function printStoreTable(result: StoreBenchResult): void {
  const fmt = (n: number, digits = 0) => (Number.isFinite(n) ? n.toFixed(digits) : '–');
  const lines = [
    '',
    'Store                 nodes  submit/s  submit p50 ms  submit p99 ms  errors  dispatch p50 ms  dispatch p99 ms  dispatch max ms  (n)',
    ...result.rows.map(
      (r) =>
        `${r.store.padEnd(20)}  ${String(r.nodes).padStart(5)}  ${fmt(r.submit.rps).padStart(8)}  ${fmt(r.submit.p50, 2).padStart(13)}  ` +
        `${fmt(r.submit.p99, 2).padStart(13)}  ${String(r.submit.errors).padStart(6)}  ${fmt(r.dispatch.p50).padStart(15)}  ` +
        `${fmt(r.dispatch.p99).padStart(15)}  ${fmt(r.dispatch.max).padStart(15)}  (${r.dispatch.n})`,
    ),
    ...(result.skipped ? [`postgres: not measured (${result.skipped})`] : []),
    '',
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const seconds = Number(process.env.BENCH_SECONDS ?? 10);
  const result = await benchStores({
    seconds,
    connections: Number(process.env.BENCH_CONNECTIONS ?? 50),
    warmupSeconds: Math.max(1, Math.round(seconds / 5)),
    fixedRate: Number(process.env.BENCH_FIXED_RATE ?? 200),
    log: (line) => process.stderr.write(`[bench] ${line}\n`),
  });
  printStoreTable(result);
}
