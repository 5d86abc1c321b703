import client from 'prom-client';
import { UPLOADS_WAITING_AT_MOST } from '../app/image-check';
import { UPLOADS_IN_PROGRESS_AT_MOST } from '../app/uploads';
import type { TaskState } from '../domain/task-state';
import { oneAtATime, OPS_DATABASE_TIMEOUT_MS, readWithin } from './database-deadline';

/** One registry per relay instance (tests run several in one process). */
export interface RelayMetrics {
  readonly registry: client.Registry;
  readonly httpRequests: client.Counter<'route' | 'method' | 'status'>;
  readonly httpDuration: client.Histogram<'route' | 'method'>;
  readonly taskFinished: client.Counter<'outcome' | 'provider'>;
  readonly queueTime: client.Histogram<'provider'>;
  readonly inferenceTime: client.Histogram<'provider'>;
  /** Counts one answered request and its latency under `httpRequests` and `httpDuration`. */
  observeRequest(route: string, method: string, status: number, seconds: number): void;
}

export function createMetrics(sources: {
  queueDepth: () => number;
  running: () => number;
  countByState: () => Promise<Record<TaskState, number>>;
  uploadsInProgress: () => number;
  imageChecksWaiting: () => number;
  taskWatchers: () => number;
}): RelayMetrics {
  const registry = new client.Registry();
  const countByState = oneAtATime(sources.countByState);
  client.collectDefaultMetrics({ register: registry, prefix: 'aigc_relay_' }); // aigc_relay_process_cpu_seconds_total, aigc_relay_nodejs_heap_size_used_bytes, …
  const metrics: RelayMetrics = {
    observeRequest(route, method, status, seconds) {
      metrics.httpRequests.inc({ route, method, status: String(status) });
      metrics.httpDuration.observe({ route, method }, seconds);
    },
    registry,
    httpRequests: new client.Counter({
      name: 'aigc_relay_http_requests_total',
      help: 'HTTP requests by route pattern, method and status code',
      labelNames: ['route', 'method', 'status'],
      registers: [registry],
    }),
    httpDuration: new client.Histogram({
      name: 'aigc_relay_http_request_duration_seconds',
      help: 'HTTP request latency by route pattern',
      labelNames: ['route', 'method'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5],
      registers: [registry],
    }),
    taskFinished: new client.Counter({
      name: 'aigc_relay_tasks_finished_total',
      help: 'Tasks that reached a terminal state, by outcome and provider',
      labelNames: ['outcome', 'provider'],
      registers: [registry],
    }),
    queueTime: new client.Histogram({
      name: 'aigc_relay_task_queue_seconds',
      help: 'Time from accept to first start',
      labelNames: ['provider'],
      buckets: [0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300],
      registers: [registry],
    }),
    inferenceTime: new client.Histogram({
      name: 'aigc_relay_task_inference_seconds',
      help: 'Time from start to finish',
      labelNames: ['provider'],
      buckets: [0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 900],
      registers: [registry],
    }),
  };
  new client.Gauge({
    name: 'aigc_relay_queue_depth',
    help:
      'Tasks queued, waiting to be claimed: on one node (SQLite) its queue; on PostgreSQL the queue all nodes share, as this node last read it (every 2 s or so): the same on every node, not to be summed across them',
    registers: [registry],
    collect() {
      this.set(sources.queueDepth());
    },
  });
  new client.Gauge({
    name: 'aigc_relay_tasks_running',
    help: 'Tasks running on this node',
    registers: [registry],
    collect() {
      this.set(sources.running());
    },
  });
  new client.Gauge({
    name: 'aigc_relay_tasks',
    help: `Tasks in the store by state (left out when the database does not answer within ${OPS_DATABASE_TIMEOUT_MS / 1000} s)`,
    labelNames: ['state'],
    registers: [registry],
    async collect() {
      // The database failing or stalling must not fail or hold the whole scrape (its 503s and the process are what
      // an operator needs to see then): after OPS_DATABASE_TIMEOUT_MS the counts are left out rather than shown
      // stale; /readyz says the database is down.
      const counts = await readWithin(countByState);
      if (!counts) {
        this.reset();
        return;
      }
      for (const [state, n] of Object.entries(counts)) this.set({ state }, n);
    },
  });
  new client.Gauge({
    name: 'aigc_relay_uploads_in_progress',
    help: `Uploads admitted and not yet answered on this node (at most ${UPLOADS_IN_PROGRESS_AT_MOST}; past it, 503)`,
    registers: [registry],
    collect() {
      this.set(sources.uploadsInProgress());
    },
  });
  new client.Gauge({
    name: 'aigc_relay_image_checks_waiting',
    help: `Input images waiting for a decode slot on this node (an upload finding ${UPLOADS_WAITING_AT_MOST} waiting gets 503)`,
    registers: [registry],
    collect() {
      this.set(sources.imageChecksWaiting());
    },
  });
  new client.Gauge({
    name: 'aigc_relay_task_watchers',
    help: 'Event streams and Prefer: wait requests open on this node, each watching one task',
    registers: [registry],
    collect() {
      this.set(sources.taskWatchers());
    },
  });
  return metrics;
}
