/** What bench/run.ts asks of one load run (bench/load.ts), and what it gets back. */
export interface LoadSpec {
  readonly url: string;
  readonly method: 'GET' | 'POST';
  readonly body?: string;
  readonly headers?: Record<string, string>;
  readonly connections: number;
  /** Measured run length; ignored when `amount` is set. */
  readonly durationSeconds?: number;
  /** Stop after this many requests instead of after a duration. */
  readonly amount?: number;
  /**
   * Fixed offered load, evenly paced (bench/paced-load.ts): one request every 1/rate s on up to `connections`
   * keep-alive connections, latency counted from each request's scheduled time. Unset = autocannon, as fast as the
   * server answers. (autocannon's own `overallRate` is not used: it lets every connection send its whole per-second
   * quota back to back at the top of each second, a full-speed burst, not a fixed rate.)
   */
  readonly pacedRate?: number;
  /** An unmeasured run first, so both servers are measured with warm JIT and caches. */
  readonly warmupSeconds?: number;
  /**
   * The measured server's pid: its CPU time (all threads, user + kernel) over the run, warm-up included, is
   * reported per 2xx answer. Read by bench/processes.ts, not by the load process.
   */
  readonly serverPid?: number;
}

export interface LoadResult {
  readonly seconds: number;
  /** 2xx responses. */
  readonly ok: number;
  /** 2xx responses per second. */
  readonly rps: number;
  readonly statusCodes: Record<string, number>;
  readonly errors: number;
  readonly timeouts: number;
  /** 2xx responses during the warm-up run. */
  readonly warmupOk?: number;
  /**
   * The server's CPU time per 2xx answer, µs (when the spec named its pid). Unlike a throughput, this hardly moves
   * when another tenant of the machine takes a core for a while: it measures the work, not the share of the machine.
   */
  readonly serverCpuUsPerOk?: number;
  /** Of 2xx responses, from send to last byte. */
  readonly latencyMs: { readonly p50: number; readonly p99: number; readonly max: number };
}
