/** The shape of bench/results.json and the table printed at the end of a run. */
import type { LoadResult } from './load-spec';
import { median, medianRoundIndex, type Paired } from './paired';
import type { StoreBenchResult } from './postgres';

export interface BenchResults {
  readonly date: string;
  readonly machine: { cpus: number; cpu: string; node: string; platform: string };
  readonly settings: { seconds: number; rounds: number; connections: number; warmupSeconds: number; fixedRate: number; threadpool: number };
  /** write + fdatasync of one page in the data dir's file system: the floor under any durable commit. */
  readonly fsync: { p50: number; p99: number };
  /** CPU (user + kernel) of creating one small file durably, as an output image is stored. Absent in older files. */
  readonly fileCreate?: { cpuUsPerFile: number; wallMsP50: number };
  /** `post`, `get`, `postFixed`: the median rounds of the paired phases below; `postEndToEnd`: one run before the end-to-end phase. */
  readonly bare: { post: LoadResult; postEndToEnd: LoadResult; get: LoadResult; postFixed: LoadResult };
  readonly relay: { submit: LoadResult; status: LoadResult; submitFixed: LoadResult };
  /**
   * The ratio phases, as alternating bare/relay rounds (bench/paired.ts): the targets are judged on the median
   * round. `submit` and `fixed` are on relays with the default SQLite writer mode, `submitOther` and `fixedOther`
   * on relays with the other one (AIGC_RELAY_SQLITE_WRITER), in the same rounds.
   */
  readonly pairs: { submit: Paired; submitOther: Paired; status: Paired; fixed: Paired; fixedOther: Paired };
  /**
   * Bare Node answering each POST only once it is written and fdatasync'd (group-committed), in the same rounds as
   * `pairs.submit` and `pairs.fixed`: what durability alone costs on this disk. Absent in older files.
   */
  readonly durable?: { submit: Paired; fixed: Paired };
  /** started_at − created_at, ms, on the fixed-rate relays (default writer mode, the other one). */
  readonly dispatch: { p50: number; p99: number; max: number; n: number };
  readonly dispatchOther: { p50: number; p99: number; max: number; n: number };
  readonly writers: { default: 'thread' | 'inline'; other: 'thread' | 'inline' };
  /** Queued tasks left when the fill phase ended, and how long the engine took to finish them. */
  readonly drain: { backlog: number; seconds: number };
  readonly afterTasks: { tasks: number; rssBytes: number };
  /** `submit`: the submit path alone, on this relay whose provider does not drain (after the RSS reading). */
  readonly queued: {
    queued: number;
    rssBytes: number;
    idleRssBytes: number;
    submit: LoadResult;
    /** The queueing itself, at the fixed rate with nothing running: the submit path's own latency. */
    paced?: LoadResult;
  };
  readonly billing: { on: LoadResult; off: LoadResult } | { todo: string };
  /**
   * SQLite vs PostgreSQL (bench/postgres.ts), run after the phases above with its own, shorter settings; `skipped`
   * says why PostgreSQL was not measured (no rows then: the comparison is not run at all). Absent in older files.
   */
  readonly stores?: StoreBenchResult & { readonly seconds: number; readonly fixedRate: number; readonly wallSeconds: number };
  /** The whole run, store comparison included. */
  readonly wallSeconds: number;
}

interface Row {
  readonly metric: string;
  readonly relay: string;
  readonly bare: string;
  readonly result: string;
  readonly target: string;
  readonly met: string;
}

const n0 = (x: number) => Math.round(x).toLocaleString('en-US');
const ms = (x: number) => `${x.toFixed(2)} ms`;
/** A difference in ms with its sign ("+1.20 ms", "−0.02 ms"): a relay can come out faster than bare Node in a round. */
const diffMs = (x: number) => `${Number(x.toFixed(2)) < 0 ? '−' : '+'}${ms(Math.abs(x))}`;
const mib = (x: number) => `${(x / 2 ** 20).toFixed(0)} MiB`;
const yes = (ok: boolean) => (ok ? 'yes' : 'NO');

/**
 * The servers' CPU time per answer in a paired phase, and bare ÷ relay per round: the ratio of the work each does
 * for one answer, which a noisy neighbour moves far less than it moves a throughput. No row when not measured.
 */
const cpuRow = (metric: string, pair: Paired): Row[] =>
  pair.cpuRatios?.length && pair.relay.serverCpuUsPerOk !== undefined && pair.bare.serverCpuUsPerOk !== undefined
    ? [{
        metric,
        relay: n0(pair.relay.serverCpuUsPerOk),
        bare: n0(pair.bare.serverCpuUsPerOk),
        result: `bare ÷ relay ${median(pair.cpuRatios).toFixed(3)}${spread(pair.cpuRatios, 3)}`,
        target: '',
        met: '',
      }]
    : [];

/** "0.123 (0.110–0.131)": the median round and the spread of the rounds. */
const spread = (xs: readonly number[], digits: number) => {
  const figure = (x: number) => (Number(x.toFixed(digits)) < 0 ? `−${Math.abs(x).toFixed(digits)}` : x.toFixed(digits));
  return xs.length > 1 ? ` (${figure(Math.min(...xs))}–${figure(Math.max(...xs))})` : '';
};
/** The per-round value a row reports: that of the median round (medianRoundIndex), whose runs it shows. */
const ofMedianRound = (perRound: readonly number[]) => perRound[medianRoundIndex(perRound)]!;

/**
 * The two runs of the round whose difference is the median one (older results files: the medians of each side,
 * which need not subtract to the median difference).
 */
const roundOfMedian = (pair: Paired, perRound: readonly number[]): { bare: LoadResult; relay: LoadResult } =>
  pair.rounds?.[medianRoundIndex(perRound)] ?? { bare: pair.bare, relay: pair.relay };

/** Durable bare Node's throughput against bare Node's, in the submit-path-alone rounds. */
const durableThroughputRow = (r: BenchResults): Row[] => {
  if (!r.durable) return [];
  const { submit } = r.durable;
  return [{ metric: '… bare Node, durable (write + fdatasync)', relay: n0(submit.relay.rps), bare: n0(submit.bare.rps), result: `ratio ${median(submit.ratios).toFixed(3)}${spread(submit.ratios, 3)}`, target: '', met: '' }];
};

/**
 * Durable bare Node at the fixed rate, and the relay's p99 over it round by round (both were paired with the same
 * bare round): the part of the added p99 that is the relay's own work rather than the disk's flushes.
 */
const durableLatencyRows = (r: BenchResults): Row[] => {
  if (!r.durable) return [];
  const { fixed } = r.durable;
  const overDurable = r.pairs.fixed.addedP99.map((added, i) => added - fixed.addedP99[i]!);
  const durableRound = roundOfMedian(fixed, fixed.addedP99);
  const overRound = medianRoundIndex(overDurable);
  const relayP99 = r.pairs.fixed.rounds?.[overRound]?.relay.latencyMs.p99 ?? r.pairs.fixed.relay.latencyMs.p99;
  const durableP99 = fixed.rounds?.[overRound]?.relay.latencyMs.p99 ?? fixed.relay.latencyMs.p99;
  return [
    {
      metric: '… bare Node, durable, p50 / p99',
      relay: `${ms(durableRound.relay.latencyMs.p50)} / ${ms(durableRound.relay.latencyMs.p99)}`,
      bare: `${ms(durableRound.bare.latencyMs.p50)} / ${ms(durableRound.bare.latencyMs.p99)}`,
      // One round throughout (the p99's median one), so the columns subtract to the result.
      result: `${diffMs(durableRound.relay.latencyMs.p50 - durableRound.bare.latencyMs.p50)} / ${diffMs(ofMedianRound(fixed.addedP99))}${spread(fixed.addedP99, 2)}`,
      target: '',
      met: '',
    },
    {
      metric: `… relay p99 over durable bare Node`,
      relay: ms(relayP99),
      bare: ms(durableP99),
      result: `${diffMs(ofMedianRound(overDurable))}${spread(overDurable, 2)}`,
      target: '',
      met: '',
    },
  ];
};

export function rows(r: BenchResults): Row[] {
  const { submit, submitOther, status, fixed, fixedOther } = r.pairs;
  const other = `… writer ${r.writers.other}`;
  const submitRatio = median(submit.ratios);
  const otherRatio = median(submitOther.ratios);
  // Both relays run in the same rounds (bench/run.ts): per round, how the default mode compares with the other.
  const modeGain = submit.ratios.map((x, i) => x / submitOther.ratios[i]!);
  const endToEndRatio = r.relay.submit.rps / r.bare.postEndToEnd.rps;
  const statusRatio = median(status.ratios);
  const added99 = ofMedianRound(fixed.addedP99);
  const latency = (p: 'p50' | 'p99', pair: Paired, added: number[]) => {
    const { relay, bare } = roundOfMedian(pair, added);
    return { relay: ms(relay.latencyMs[p]), bare: ms(bare.latencyMs[p]), result: `${diffMs(ofMedianRound(added))}${spread(added, 2)}` };
  };
  const out: Row[] = [
    { metric: `submit throughput (req/s), writer ${r.writers.default}`, relay: n0(submit.relay.rps), bare: n0(submit.bare.rps), result: `ratio ${submitRatio.toFixed(3)}${spread(submit.ratios, 3)}`, target: '≥ 0.25', met: yes(submitRatio >= 0.25) },
    { metric: other, relay: n0(submitOther.relay.rps), bare: n0(submitOther.bare.rps), result: `ratio ${otherRatio.toFixed(3)}${spread(submitOther.ratios, 3)}; ${r.writers.default} ÷ ${r.writers.other} ${median(modeGain).toFixed(2)}${spread(modeGain, 2)}`, target: '', met: '' },
    ...durableThroughputRow(r),
    { metric: 'submit + run + finish, end to end (tasks/s)', relay: n0(r.relay.submit.rps), bare: n0(r.bare.postEndToEnd.rps), result: `ratio ${endToEndRatio.toFixed(3)}`, target: '', met: '' },
    ...cpuRow('… server CPU per submit (µs), path alone', submit),
    { metric: 'status GET throughput (req/s)', relay: n0(status.relay.rps), bare: n0(status.bare.rps), result: `ratio ${statusRatio.toFixed(3)}${spread(status.ratios, 3)}`, target: '≥ 0.5', met: yes(statusRatio >= 0.5) },
    ...cpuRow('… server CPU per status GET (µs)', status),
    { metric: `submit latency p50 at ${r.settings.fixedRate}/s, paced`, ...latency('p50', fixed, fixed.addedP50), target: '', met: '' },
    { metric: other, ...latency('p50', fixedOther, fixedOther.addedP50), target: '', met: '' },
    { metric: `submit latency p99 at ${r.settings.fixedRate}/s, paced`, ...latency('p99', fixed, fixed.addedP99), target: '≤ +2 ms', met: yes(added99 <= 2) },
    { metric: other, ...latency('p99', fixedOther, fixedOther.addedP99), target: '', met: '' },
    ...durableLatencyRows(r),
    // Every task also runs and stores its image here: this is the CPU of 1,000 tasks a second, end to end.
    ...cpuRow(`… server CPU per task at ${r.settings.fixedRate}/s (µs)`, fixed),
    // The same rate on a relay that only queues (one run, beside the median bare round): what the submit path
    // itself adds, apart from the work of running the tasks.
    ...(r.queued.paced
      ? [{
          metric: `… submit path alone at ${r.settings.fixedRate}/s, p50 / p99`,
          relay: `${ms(r.queued.paced.latencyMs.p50)} / ${ms(r.queued.paced.latencyMs.p99)}`,
          bare: `${ms(fixed.bare.latencyMs.p50)} / ${ms(fixed.bare.latencyMs.p99)}`,
          result: `${diffMs(r.queued.paced.latencyMs.p50 - fixed.bare.latencyMs.p50)} / ${diffMs(r.queued.paced.latencyMs.p99 - fixed.bare.latencyMs.p99)}`,
          target: '',
          met: '',
        }]
      : []),
    { metric: 'disk fsync (durable-commit floor)', relay: `p50 ${ms(r.fsync.p50)}`, bare: '', result: `p99 ${ms(r.fsync.p99)}`, target: '', met: '' },
    ...(r.fileCreate
      ? [{ metric: 'small file created durably (output floor)', relay: `${n0(r.fileCreate.cpuUsPerFile)} µs CPU`, bare: '', result: `p50 ${ms(r.fileCreate.wallMsP50)}`, target: '', met: '' }]
      : []),
    { metric: 'enqueue→dispatch p50', relay: ms(r.dispatch.p50), bare: '', result: `n=${r.dispatch.n}`, target: '', met: '' },
    { metric: 'enqueue→dispatch p99', relay: ms(r.dispatch.p99), bare: '', result: `max ${ms(r.dispatch.max)}`, target: '≤ 10 ms', met: yes(r.dispatch.p99 <= 10) },
    { metric: other, relay: ms(r.dispatchOther.p99), bare: '', result: `p50 ${ms(r.dispatchOther.p50)}, max ${ms(r.dispatchOther.max)}`, target: '', met: '' },
    { metric: `engine drain of ${n0(r.drain.backlog)} queued (tasks/s)`, relay: r.drain.backlog > 0 ? n0(r.drain.backlog / r.drain.seconds) : 'kept up', bare: '', result: `${r.drain.seconds.toFixed(1)} s`, target: '', met: '' },
    { metric: `RSS after ${n0(r.afterTasks.tasks)} tasks`, relay: mib(r.afterTasks.rssBytes), bare: '', result: '', target: '', met: '' },
    { metric: `RSS with ${n0(r.queued.queued)} queued`, relay: mib(r.queued.rssBytes), bare: '', result: `idle ${mib(r.queued.idleRssBytes)}`, target: '', met: '' },
  ];
  if ('todo' in r.billing) {
    out.push({ metric: 'submit, billing off vs on', relay: 'TODO', bare: '', result: r.billing.todo, target: '', met: '' });
  } else {
    out.push({
      metric: 'end to end, billing off vs on (tasks/s)',
      relay: `${n0(r.billing.off.rps)} vs ${n0(r.billing.on.rps)}`,
      bare: '',
      result: `billing costs ${((1 - r.billing.on.rps / r.billing.off.rps) * 100).toFixed(1)}%`,
      target: '',
      met: '',
    });
  }
  return out;
}

/** A Markdown table: readable in a terminal and pasteable into BENCHMARKS.md. */
export function printTable(r: BenchResults): void {
  const table = rows(r);
  const head: Row = { metric: 'metric', relay: 'relay', bare: 'bare Node', result: 'result', target: 'target', met: 'met' };
  const keys = Object.keys(head) as Array<keyof Row>;
  const width = Object.fromEntries(keys.map((k) => [k, Math.max(...[head, ...table].map((row) => row[k].length))])) as Record<keyof Row, number>;
  const line = (row: Row) => `| ${keys.map((k) => row[k].padEnd(width[k])).join(' | ')} |`;
  const out = [
    line(head),
    `|${keys.map((k) => '-'.repeat(width[k] + 2)).join('|')}|`,
    ...table.map(line),
    '',
    `${r.machine.cpus} × ${r.machine.cpu}, Node ${r.machine.node}, ${r.machine.platform}; ${r.settings.connections} connections, ` +
      `${r.settings.seconds} s per phase after ${r.settings.warmupSeconds} s warm-up (ratio phases: ${r.settings.rounds} alternating rounds, median shown, range in brackets); ` +
      `relays run with UV_THREADPOOL_SIZE=${r.settings.threadpool}; ` +
      `whole run ${r.wallSeconds.toFixed(0)} s.`,
  ];
  process.stdout.write(`${out.join('\n')}\n`);
}
