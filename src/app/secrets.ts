import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

/**
 * The admin token and the relay secret: from the environment when given, else generated once and kept in the
 * data dir (mode 0600). `created` tells the caller to print the admin token, which happens only that once.
 */
export interface Secret {
  readonly value: string;
  readonly created: boolean;
}

export function loadOrCreateSecret(dataDir: string, fileName: string, fromEnv: string | undefined, bytes: number): Secret {
  if (fromEnv) return { value: fromEnv, created: false };
  const file = path.join(dataDir, fileName);
  try {
    return { value: fs.readFileSync(file, 'utf8').trim(), created: false };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  fs.mkdirSync(dataDir, { recursive: true });
  const value = randomBytes(bytes).toString('base64url');
  try {
    // 'wx': if another process created it first, use theirs rather than overwrite it.
    fs.writeFileSync(file, `${value}\n`, { mode: 0o600, flag: 'wx' });
    return { value, created: true };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    return { value: fs.readFileSync(file, 'utf8').trim(), created: false };
  }
}
