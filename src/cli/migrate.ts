import { migrateDatabase } from '../relay-base';
import type { Config } from '../config/env';

/** `aigc-relay migrate`: apply pending schema versions and say what was done (servers also do this at start). */
export async function runMigrate(config: Config): Promise<void> {
  const { kind, applied, version } = await migrateDatabase(config);
  const what = applied.length > 0 ? `applied ${applied.join(', ')}` : 'nothing to apply';
  process.stdout.write(`aigc-relay: ${kind} schema at version ${version} (${what})\n`);
}
