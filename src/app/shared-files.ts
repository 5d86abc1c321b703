import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { FileStore } from '../ports/file-store';

/** Names the files dir it lies in; a node that sees the same storage reads the same one. */
const MARKER_FILE = '.aigc-relay-files-dir';

/** The marker of `filesDir`, made on first use (exclusively: nodes starting together on one dir agree on one). */
export function filesDirMarker(filesDir: string): string {
  const file = path.join(filesDir, MARKER_FILE);
  fs.mkdirSync(filesDir, { recursive: true, mode: 0o700 });
  try {
    fs.writeFileSync(file, `${randomBytes(12).toString('base64url')}\n`, { flag: 'wx', mode: 0o600 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  return fs.readFileSync(file, 'utf8').trim();
}

/**
 * Nodes of one database must store their images and uploads where all of them read (AIGC_RELAY_DATA_DIR on shared
 * storage): a node with a data dir of its own answers 404 "content is gone" for every file another node stored, and
 * the others for its own, with nothing in any log to say why. The database records the marker of the first node's
 * files dir; a node whose dir carries another one says so at start. A warning, not a refusal: the node can still
 * serve what it stores itself, and an operator may be moving storage. Returns whether the dir is the database's.
 */
export async function checkSharedFilesDir(
  filesDir: string,
  files: Pick<FileStore, 'adoptFilesDirMarker'>,
  now: number,
  warn: (fields: Record<string, unknown>, message: string) => void,
  options: { readonly adminTokenSet: boolean },
): Promise<boolean> {
  const mine = filesDirMarker(filesDir);
  if ((await files.adoptFilesDirMarker(mine, now)) === mine) return true;
  warn(
    { filesDir },
    'this node\'s data dir is not the one the other nodes of this database store files in: images and uploads stored by another node are 404 here, and this node\'s on the others. ' +
      'Give every node the same AIGC_RELAY_DATA_DIR, on storage they all see' +
      (options.adminTokenSet ? '' : '; until then this node also has an admin token of its own (or set AIGC_RELAY_ADMIN_TOKEN on every node)'),
  );
  return false;
}
