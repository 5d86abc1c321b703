import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

/**
 * `npm run bench` runs under plain Node, not vitest, but borrows helpers from `test/` (spawning relays, the
 * PostgreSQL probe, the Tencent protocol server). A helper that imports vitest (a `describe` wrapper, say) throws
 * "Vitest failed to access its internal state" the moment the bench starts, and nothing in `npm test` would notice:
 * this loads every module the bench's entry points import, in a plain Node process, as the bench does.
 */
const ROOT = path.resolve(__dirname, '../..');
const BENCH = path.join(ROOT, 'bench');

/** The relative modules a bench file imports (`import … from './x'`, `'../test/helpers/y'`), as absolute paths. */
function importsOf(file: string): string[] {
  const source = fs.readFileSync(file, 'utf8');
  return [...source.matchAll(/^import [^;]*? from '(\.{1,2}\/[^']+)';$/gm)].map((m) => path.resolve(path.dirname(file), m[1]!));
}

const entryPoints = fs.readdirSync(BENCH).filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts')).map((f) => path.join(BENCH, f));
// The entry points themselves run the bench when imported; what they import is what must load.
const modules = [...new Set(entryPoints.flatMap(importsOf))].map((m) => (fs.existsSync(`${m}.ts`) ? `${m}.ts` : m));

describe('the bench loads outside vitest', () => {
  it('finds the test helpers the bench borrows', () => {
    expect(modules.some((m) => m.includes(`${path.sep}test${path.sep}helpers${path.sep}postgres.ts`))).toBe(true);
  });

  it('every module the bench imports loads in a plain Node process', async () => {
    const script = `for (const m of ${JSON.stringify(modules)}) await import(m);`;
    const run = promisify(execFile)(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: ROOT, timeout: 60_000 });
    await expect(run).resolves.toBeDefined();
  }, 90_000);
});
