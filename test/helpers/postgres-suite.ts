import { describe } from 'vitest';
import { postgresUnavailable, warnSkipped } from './postgres';

/**
 * `describe` for a suite that needs the test PostgreSQL: registered as skipped, with a visible notice naming
 * `skipNotice` and the reason, when none answers (the machines this project runs on have one; others may not).
 * `await describeWithPostgres(…)` at the top level of the test file.
 */
export async function describeWithPostgres(name: string, skipNotice: string, body: () => void): Promise<void> {
  const unavailable = await postgresUnavailable();
  if (unavailable) warnSkipped(skipNotice, unavailable);
  (unavailable ? describe.skip : describe)(name, body);
}
