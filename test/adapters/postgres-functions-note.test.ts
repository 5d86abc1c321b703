import { describe, expect, it } from 'vitest';
import { CURRENT_FUNCTION_VERSIONS, PG_MIGRATIONS } from '../../src/adapters/postgres/migrations';

/**
 * CURRENT_FUNCTION_VERSIONS tells a reader which migration holds each SQL function's running body (the finish was
 * wrapped by renames). Worked out here from the migrations themselves, following every CREATE and RENAME, so the
 * table cannot go stale when a migration redefines a function. Needs no database.
 */
describe('the PostgreSQL functions note', () => {
  it('names, for every function the migrations define, the version whose body runs', () => {
    const current = new Map<string, number>();
    PG_MIGRATIONS.forEach((migration, index) => {
      if (typeof migration !== 'string') return;
      const version = index + 1;
      for (const [, verb, name, renamed] of migration.matchAll(/(CREATE(?: OR REPLACE)? FUNCTION|ALTER FUNCTION) (\w+)(?:\([^)]*\))?(?: RENAME TO (\w+))?/g)) {
        if (verb === 'ALTER FUNCTION' && renamed) {
          current.set(renamed, current.get(name!)!);
          current.delete(name!);
        } else if (verb !== 'ALTER FUNCTION') current.set(name!, version);
      }
    });
    expect(Object.fromEntries([...current].sort())).toEqual(Object.fromEntries(Object.entries(CURRENT_FUNCTION_VERSIONS).sort()));
  });
});
