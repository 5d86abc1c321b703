import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { ConfigError, credentialProblem, SECRET_RULE, type Config, type CredentialRule } from '../config/env';

/**
 * The admin token and the relay secret: from the environment when given, else generated once and kept in the
 * data dir (mode 0600). `created` tells the caller to print the admin token, which happens only that once.
 */
export interface Secret {
  readonly value: string;
  readonly created: boolean;
}

/**
 * The relay secret, under the one rule the server and every operator command follow (src/relay-base.ts opens it for
 * both): AIGC_RELAY_SECRET, else `<data dir>/secret`. The file is generated only on SQLite, where the data dir holds
 * the database the secret belongs to, so `npm start` and a command on the same data dir find the same one whichever
 * ran first. On PostgreSQL the database is shared by nodes that each have a data dir: a secret one of them made up
 * (a node, or `channels add` on an operator's machine) would sign links and seal channel keys the others cannot check
 * or open, failing later and elsewhere; so there a missing secret stops the start or the command at once.
 */
export function relaySecret(config: Pick<Config, 'dataDir' | 'databaseUrl' | 'secret'>): Secret {
  if (!config.databaseUrl) return loadOrCreateSecret(config.dataDir, 'secret', config.secret, 32, SECRET_RULE);
  if (config.secret) return { value: config.secret, created: false };
  const file = path.join(config.dataDir, 'secret');
  const kept = readKept(file, SECRET_RULE);
  if (kept === undefined) {
    throw new ConfigError(
      SECRET_RULE.variable,
      `not set and no ${file}: with AIGC_RELAY_DATABASE_URL every node and operator command must use the same secret; set AIGC_RELAY_SECRET to it (or put it in that file)`,
    );
  }
  return { value: kept, created: false };
}

export function loadOrCreateSecret(dataDir: string, fileName: string, fromEnv: string | undefined, bytes: number, rule: CredentialRule): Secret {
  if (fromEnv) return { value: fromEnv, created: false };
  const file = path.join(dataDir, fileName);
  const kept = readKept(file, rule);
  if (kept !== undefined) return { value: kept, created: false };
  fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const value = randomBytes(bytes).toString('base64url');
  // Written whole and flushed under a name of its own, then linked into place: the link fails if another process
  // (a node sharing the data dir, a CLI command) got there first, and nobody ever reads the file half-written (an
  // empty or short file is refused, see `checked`: a process starting beside this one stopped on it).
  const draft = path.join(dataDir, `.${fileName}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  const fd = fs.openSync(draft, 'wx', 0o600);
  try {
    try {
      fs.writeSync(fd, `${value}\n`);
      // On disk before it is used: a power cut must not leave an empty file behind a token already printed.
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    try {
      placeWithoutOverwriting(draft, file, `${value}\n`);
    } catch (err) {
      // 'EEXIST': if another process created it first, use theirs rather than overwrite it.
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      return { value: checked(file, fs.readFileSync(file, 'utf8'), rule), created: false };
    }
  } finally {
    fs.rmSync(draft, { force: true });
  }
  syncDirectory(dataDir);
  return { value, created: true };
}

/**
 * `draft` at `file` unless `file` exists (EEXIST). A hard link, which appears whole; on a file system without hard
 * links (some network and container mounts), `content` written to `file` created exclusively instead, rather than
 * no start at all: flushed like the draft before the value is used (a copy is not, and a power cut could leave an
 * empty file behind a token already printed), and removed again if it cannot be written whole.
 */
function placeWithoutOverwriting(draft: string, file: string, content: string): void {
  try {
    fs.linkSync(draft, file);
    return;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? '';
    if (!['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'ENOSYS', 'EXDEV'].includes(code)) throw err;
  }
  const fd = fs.openSync(file, 'wx', 0o600); // EEXIST: another process placed it first
  try {
    try {
      fs.writeSync(fd, content);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  } catch (err) {
    fs.rmSync(file, { force: true }); // ours, and not whole: no start may read it
    throw err;
  }
}

/** The directory entry made durable too (best effort where a directory cannot be opened for it). */
function syncDirectory(dir: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(dir, 'r');
    fs.fsyncSync(fd);
  } catch {
    // not supported here (some platforms and file systems)
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

/** The value kept in `file`, checked; undefined when there is no such file. */
function readKept(file: string, rule: CredentialRule): string | undefined {
  try {
    return checked(file, fs.readFileSync(file, 'utf8'), rule);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/**
 * The same rules as the environment variable: an empty or damaged file (a crash between creating and writing it,
 * an operator's edit) must stop the start, not become an empty signing key anyone can forge links with.
 */
function checked(file: string, content: string, rule: CredentialRule): string {
  const value = content.trim();
  const problem = credentialProblem(value, rule);
  if (problem) throw new ConfigError(rule.variable, `${file}: ${problem}; set ${rule.variable}, or delete the file to generate a new one`);
  return value;
}
