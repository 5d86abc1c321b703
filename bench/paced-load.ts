/**
 * An open-loop load at a fixed rate, evenly paced: request i is due at start + i/rate and is sent then (or as soon
 * as the timer fires: Node's timers resolve to about 1 ms), on up to `connections` keep-alive connections. Latency
 * runs from the request's scheduled time, not from when a connection was free, so a slow server cannot hide its
 * queueing by slowing the generator down (no coordinated omission).
 */
import http from 'node:http';
import { performance } from 'node:perf_hooks';
import type { LoadResult, LoadSpec } from './load-spec';
import { percentile } from './stats';

export function pacedLoad(spec: LoadSpec & { pacedRate: number }, seconds: number, record: boolean): Promise<LoadResult> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: spec.connections });
  const interval = 1000 / spec.pacedRate;
  const total = Math.max(1, Math.round(seconds * spec.pacedRate));
  const samples: number[] = [];
  const statusCodes: Record<string, number> = {};
  let errors = 0;
  let sent = 0;
  let settled = 0;
  const start = performance.now();

  return new Promise((resolve) => {
    const done = () => {
      if (++settled < total) return;
      agent.destroy();
      const elapsed = (performance.now() - start) / 1000;
      const ok = Object.entries(statusCodes).reduce((n, [code, count]) => (code.startsWith('2') ? n + count : n), 0);
      samples.sort((a, b) => a - b);
      resolve({
        seconds: elapsed,
        ok,
        rps: ok / elapsed,
        statusCodes,
        errors,
        timeouts: 0,
        latencyMs: { p50: percentile(samples, 0.5), p99: percentile(samples, 0.99), max: samples.at(-1) ?? NaN },
      });
    };
    const fire = (scheduled: number) => {
      const request = http.request(spec.url, { method: spec.method, headers: spec.headers ?? {}, agent }, (response) => {
        response.resume();
        response.on('end', () => {
          const code = String(response.statusCode);
          statusCodes[code] = (statusCodes[code] ?? 0) + 1;
          if (record && code.startsWith('2')) samples.push(performance.now() - scheduled);
          done();
        });
      });
      request.on('error', () => {
        errors++;
        done();
      });
      request.end(spec.body);
    };
    const tick = () => {
      const due = Math.min(total, Math.floor((performance.now() - start) / interval) + 1);
      while (sent < due) fire(start + sent++ * interval);
      if (sent < total) setTimeout(tick, Math.max(0, start + sent * interval - performance.now()));
    };
    tick();
  });
}
