/**
 * One load run, in its own process so that load generation never shares an event loop with the server it
 * measures. Started by bench/run.ts as `node --import tsx bench/load.ts '<LoadSpec JSON>'`; prints one line of
 * LoadResult JSON on stdout.
 *
 * Latency is recorded here from autocannon's per-response event (float milliseconds from hrtime) rather than from
 * its histogram, which keeps whole milliseconds only: too coarse for "p99 within 2 ms of bare Node".
 */
import autocannon from 'autocannon';
import type { LoadResult, LoadSpec } from './load-spec';
import { pacedLoad } from './paced-load';
import { percentile } from './stats';

async function once(spec: LoadSpec, seconds: number | undefined, record: boolean): Promise<LoadResult> {
  if (spec.pacedRate !== undefined) return pacedLoad({ ...spec, pacedRate: spec.pacedRate }, seconds ?? 1, record);
  const samples: number[] = [];
  const statusCodes: Record<string, number> = {};
  const started = process.hrtime.bigint();
  const instance = autocannon({
    url: spec.url,
    method: spec.method,
    ...(spec.body !== undefined ? { body: spec.body } : {}),
    headers: spec.headers ?? {},
    connections: spec.connections,
    ...(spec.amount !== undefined && record ? { amount: spec.amount } : { duration: seconds ?? 1 }),
    timeout: 30,
  });
  instance.on('response', (_client: unknown, statusCode: number, _bytes: number, responseTime: number) => {
    statusCodes[statusCode] = (statusCodes[statusCode] ?? 0) + 1;
    if (record && statusCode >= 200 && statusCode < 300) samples.push(responseTime);
  });
  const result = await instance;
  const elapsed = Number(process.hrtime.bigint() - started) / 1e9;
  const ok = Object.entries(statusCodes).reduce((n, [code, count]) => (code.startsWith('2') ? n + count : n), 0);
  samples.sort((a, b) => a - b);
  return {
    seconds: elapsed,
    ok,
    rps: ok / elapsed,
    statusCodes,
    errors: result.errors,
    timeouts: result.timeouts,
    latencyMs: { p50: percentile(samples, 0.5), p99: percentile(samples, 0.99), max: samples.at(-1) ?? NaN },
  };
}

const spec = JSON.parse(process.argv[2] ?? '{}') as LoadSpec;
const warmup = spec.warmupSeconds ? await once(spec, spec.warmupSeconds, false) : undefined;
const result = await once(spec, spec.durationSeconds, true);
process.stdout.write(`${JSON.stringify({ ...result, warmupOk: warmup?.ok ?? 0 })}\n`);
