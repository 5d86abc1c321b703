/**
 * Relay and bare Node measured in alternating rounds (bare, relay, bare, relay, …) rather than one long run each:
 * on a shared virtual machine the baseline itself moves by 2× within minutes, and a ratio of two runs taken at
 * different moments measures the machine as much as the relay. Each round's ratio pairs two runs taken seconds
 * apart; the reported figure is the median round.
 */
import type { LoadResult, LoadSpec } from './load-spec';

export interface Paired {
  /** The median of the rounds, metric by metric (max: the largest seen). */
  readonly bare: LoadResult;
  readonly relay: LoadResult;
  /** relay rps / bare rps, per round. */
  readonly ratios: number[];
  /** relay p99 − bare p99 (ms), per round. */
  readonly addedP99: number[];
  readonly addedP50: number[];
  /** bare CPU per answer / relay CPU per answer, per round (when both specs named their server's pid). */
  readonly cpuRatios: number[];
  /** Each round's two runs, so a row can show the round behind a median (absent in older results files). */
  readonly rounds?: ReadonlyArray<{ readonly bare: LoadResult; readonly relay: LoadResult }>;
}

/**
 * The round whose value is the median of `perRound` (for an even count the upper middle: the stricter reading of an
 * added latency), so a table row can show that round's own two figures beside its difference instead of medians
 * taken separately, which need not subtract to it.
 */
export function medianRoundIndex(perRound: readonly number[]): number {
  const order = perRound.map((x, i) => [x, i] as const).sort((a, b) => a[0] - b[0]);
  return order[Math.floor(order.length / 2)]![1];
}

export const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

export function medianResult(results: readonly LoadResult[]): LoadResult {
  const statusCodes: Record<string, number> = {};
  for (const r of results) for (const [code, n] of Object.entries(r.statusCodes)) statusCodes[code] = (statusCodes[code] ?? 0) + n;
  const of = (pick: (r: LoadResult) => number) => median(results.map(pick));
  return {
    seconds: results.reduce((s, r) => s + r.seconds, 0),
    ok: results.reduce((s, r) => s + r.ok, 0),
    rps: of((r) => r.rps),
    statusCodes,
    errors: results.reduce((s, r) => s + r.errors, 0),
    timeouts: results.reduce((s, r) => s + r.timeouts, 0),
    latencyMs: { p50: of((r) => r.latencyMs.p50), p99: of((r) => r.latencyMs.p99), max: Math.max(...results.map((r) => r.latencyMs.max)) },
    ...(results.every((r) => r.serverCpuUsPerOk !== undefined) ? { serverCpuUsPerOk: of((r) => r.serverCpuUsPerOk!) } : {}),
  };
}

/**
 * `rounds` rounds of `seconds` each; in every round bare Node first, then each relay in turn (so two relays compared
 * with each other are also measured seconds apart). Warm-up (if the specs ask for one) only in the first round.
 */
export async function interleaved<Names extends string>(
  run: (name: string, spec: LoadSpec) => Promise<LoadResult>,
  name: string,
  bare: LoadSpec,
  relays: Record<Names, LoadSpec>,
  rounds: number,
  seconds: number,
): Promise<Record<Names, Paired>> {
  const names = Object.keys(relays) as Names[];
  const bares: LoadResult[] = [];
  const measured = Object.fromEntries(names.map((n) => [n, [] as LoadResult[]])) as Record<Names, LoadResult[]>;
  for (let i = 0; i < rounds; i++) {
    const round = (spec: LoadSpec): LoadSpec => ({ ...spec, durationSeconds: seconds, warmupSeconds: i === 0 ? spec.warmupSeconds ?? 0 : 0 });
    bares.push(await run(`${name} ${i + 1}/${rounds}: bare`, round(bare)));
    for (const n of names) measured[n].push(await run(`${name} ${i + 1}/${rounds}: ${n}`, round(relays[n])));
  }
  return Object.fromEntries(
    names.map((n) => {
      const rs = measured[n];
      const paired: Paired = {
        bare: medianResult(bares),
        relay: medianResult(rs),
        ratios: rs.map((r, i) => r.rps / bares[i]!.rps),
        addedP99: rs.map((r, i) => r.latencyMs.p99 - bares[i]!.latencyMs.p99),
        addedP50: rs.map((r, i) => r.latencyMs.p50 - bares[i]!.latencyMs.p50),
        rounds: rs.map((r, i) => ({ bare: bares[i]!, relay: r })),
        cpuRatios: rs.flatMap((r, i) => {
          const bareCpu = bares[i]!.serverCpuUsPerOk;
          return bareCpu !== undefined && r.serverCpuUsPerOk !== undefined ? [bareCpu / r.serverCpuUsPerOk] : [];
        }),
      };
      return [n, paired];
    }),
  ) as Record<Names, Paired>;
}

/** One relay against bare Node in alternating rounds. */
export async function paired(
  run: (name: string, spec: LoadSpec) => Promise<LoadResult>,
  name: string,
  bare: LoadSpec,
  relay: LoadSpec,
  rounds: number,
  seconds: number,
): Promise<Paired> {
  return (await interleaved(run, name, bare, { relay }, rounds, seconds)).relay;
}
