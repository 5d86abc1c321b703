import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { PG_MIGRATIONS } from '../../src/adapters/postgres/migrations';
import { MIGRATIONS } from '../../src/adapters/sqlite/migrations';

/**
 * A migration that has shipped is never edited: a database migrated by a relay of that time has its version
 * recorded, so an edit never runs there, and the relay then meets a schema it was not written for. PostgreSQL 8, 10
 * and 16 were edited after they shipped, and a database migrated in between failed every Tencent submission, every
 * submit of a key with an rpm, or charged tasks whose cancel had been taken (postgres-upgrade.test.ts; 25 repairs
 * them). Each version's text is pinned here by its hash: a change goes in a new version, appended, whose hash is
 * appended below with it.
 */
const hash = (migration: unknown): string =>
  createHash('sha256').update(typeof migration === 'string' ? migration : JSON.stringify(migration)).digest('hex').slice(0, 16);

const SQLITE = [
  'f40be6b9d887e601', 'fb56749d13d3c5c8', '02611c2af74124d9', 'f395640ddf29c841', '7f61c16335bd4285', 'e1d6d0bd68ea8e7c',
  '7d4db75782bff181', 'b6fb502f64e64240', '252801220a26c7a2', '82131ea6cca7cf39', 'f2fa2e1bf95c227f', '6f6aec12e219dcea',
  '47ac179de7351ffc', '8ed4b75a2e08aa3a', '7059401d09f5455b', '6e19dfca9506c792',
];
const POSTGRES = [
  'df0fef74d83205c4', 'e5e5495455a34fcf', 'f7de49ba68a4e311', 'aabee6c2a1d1aa43', 'b7c19dfca2dbed69', '5dba3ca8b8d2ba47',
  'e97de34596ab06c7', '5f82afa04fd14cc6', 'b7751d71d2e86ddd', 'c990820415c67edb', 'fda33b6aecd12967', '70af9c679bb60b49',
  '55327d010865ea71', '79f83ce420d71e17', '91376323f4f8e0e1', '9710c729c9981d0d', 'b0e329e861155eee', '6160582aed222c17',
  'bd2daadbb408a0e2', '47ac179de7351ffc', '26871f0a076be72e', '5caf9707ef35f330', 'f3e4ae2691c24476', 'bc33cd835ccaf138',
  '4186a97bc250f420', '95daf66893026bd4', '0e3e651c2cd5b57e',
];

describe('shipped migrations are never edited', () => {
  it('SQLite: every version has the text it shipped with (a change is a new version, its hash appended here)', () => {
    expect(MIGRATIONS.map(hash)).toEqual(SQLITE);
  });
  it('PostgreSQL: every version has the text it shipped with (a change is a new version, its hash appended here)', () => {
    expect(PG_MIGRATIONS.map(hash)).toEqual(POSTGRES);
  });
});
