import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/**
 * One temporary root for the whole run: every test's data dir (test/helpers/relay.ts `tempDir`) is made inside it,
 * and it is removed when the run ends. A run makes hundreds of databases and image directories, and some machines
 * this runs on have little disk to spare.
 */
export default function setup(): () => void {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'aigc-relay-tests-'));
  process.env.AIGC_TEST_TMP = root; // inherited by the test processes, which start after this
  return () => fs.rmSync(root, { recursive: true, force: true });
}
