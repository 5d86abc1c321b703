import { expect } from 'vitest';
import { runCli } from './child';

/**
 * Runs the CLI with `env` and expects an operator's mistake to be refused: exit 1, nothing on stdout, a message on
 * stderr matching `mentions`, and no stack trace.
 */
export async function expectCliRefused(env: Record<string, string>, args: string[], mentions: RegExp): Promise<void> {
  const res = await runCli(args, env);
  expect(res.code, res.stderr).toBe(1);
  expect(res.stdout).toBe('');
  expect(res.stderr).toMatch(mentions);
  expect(res.stderr, 'a stack trace').not.toMatch(/\n\s+at /);
}
