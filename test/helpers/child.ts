import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { eventually } from './eventually';

const BIN = fileURLToPath(new URL('../../bin/aigc-relay.js', import.meta.url));

export interface RelayProcess {
  readonly child: ChildProcess;
  readonly url: string;
  /** Everything printed so far. */
  output(): string;
  /** Sends a signal and resolves with the exit code (or signal name) once the process is gone. */
  stop(signal?: NodeJS.Signals): Promise<number | string>;
}

/**
 * Starts `aigc-relay serve` as a real process (what `npm start` runs) on a free loopback port and resolves once it
 * printed its address. Used by crash tests: kill -9, start again on the same data dir.
 */
export function spawnRelay(
  env: Record<string, string>,
  args: string[] = ['serve'],
  options: { nodeArgs?: readonly string[]; bin?: string } = {},
): Promise<RelayProcess> {
  // nodeArgs: flags for node itself, e.g. the benchmark's `--cpu-prof`; bin: another checkout's (bench/ab.ts).
  const child = spawn(process.execPath, [...(options.nodeArgs ?? []), options.bin ?? BIN, ...args], {
    env: { ...process.env, AIGC_RELAY_HOST: '127.0.0.1', AIGC_RELAY_PORT: '0', AIGC_RELAY_LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const exited = new Promise<number | string>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal ?? -1)));
  return new Promise((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      const match = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(output);
      if (match) {
        child.stdout!.off('data', onData);
        child.stdout!.on('data', (c: Buffer) => (output += c.toString()));
        resolve({
          child,
          url: match[1]!,
          output: () => output,
          stop: (signal = 'SIGTERM') => {
            if (child.exitCode === null && child.signalCode === null) child.kill(signal);
            return exited;
          },
        });
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', (c: Buffer) => (output += c.toString()));
    void exited.then((code) => reject(new Error(`relay exited (${code}) before listening:\n${output}`)));
  });
}

/**
 * Polls `check` with the process frozen (SIGSTOP) and leaves it frozen once `check` holds; until then it resumes
 * it (SIGCONT) between looks. Crash tests kill "while tasks run" this way: a stopped process finishes nothing, so
 * what `check` counted is what the kill then cuts off. Counted while it ran, short tasks could all finish between
 * the count and the kill on a slow host, and the test would then check nothing.
 */
export async function freezeWhen(proc: RelayProcess, what: string, ms: number, check: () => boolean | Promise<boolean>): Promise<void> {
  await eventually(what, ms, async () => {
    proc.child.kill('SIGSTOP');
    if (await check()) return true;
    proc.child.kill('SIGCONT');
    return undefined;
  });
}

/**
 * Runs the CLI to completion; resolves with its exit code and output. With `timeoutMs`, a CLI still running then is
 * killed and resolves with code -1 (for commands that could hang, so that a regression fails rather than stalls).
 */
export function runCli(
  args: string[],
  env: Record<string, string>,
  options: { timeoutMs?: number } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const timer = options.timeoutMs === undefined ? undefined : setTimeout(() => {
    stderr += `\n(killed: still running after ${options.timeoutMs} ms)`;
    child.kill('SIGKILL');
  }, options.timeoutMs);
  return new Promise((resolve) =>
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout, stderr });
    }),
  );
}
