import { createHmac, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { ConfigError, credentialProblem, SECRET_RULE, type Config, type CredentialRule } from '../config/env';
import type { ChannelRecord, ChannelStore } from '../ports/channels';
import { createSecretBox } from './secret-box';

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
 * both): AIGC_RELAY_SECRET, else `<data dir>/secret`, generated there by whichever needs it first, so `npm start`
 * and a command on the same data dir find the same one. With PostgreSQL the nodes share the database but each has a
 * data dir, which they may or may not share: a secret one of them made up would sign links and seal channel keys
 * the others cannot check or open, failing later and elsewhere. So the database keeps the fingerprint of the first
 * secret it was opened with (on a database from before, the first secret recorded must open its channel keys), and:
 * - with no secret here and one on record (or sealed keys), nothing is generated: one line says to set it;
 * - a secret here that is not the recorded one stops the start or the command, naming the variable.
 */
export async function openRelaySecret(
  config: Pick<Config, 'dataDir' | 'secret'>,
  channels: Pick<ChannelStore, 'secretFingerprint' | 'adoptSecretFingerprint' | 'listChannels'>,
  now: number,
): Promise<Secret> {
  const file = path.join(config.dataDir, 'secret');
  const from = config.secret ? SECRET_RULE.variable : file;
  let secret: Secret | undefined = config.secret ? { value: config.secret, created: false } : undefined;
  const kept = secret ?? (() => {
    const value = readKept(file, SECRET_RULE);
    return value === undefined ? undefined : { value, created: false };
  })();
  // A database from before fingerprints were kept has none on record, but may hold channel keys sealed under the
  // secret its servers use: that secret, not one made up here, must become the record.
  const onRecord = await channels.secretFingerprint();
  const sealed = onRecord === undefined ? await channels.listChannels({ includeDeleted: true }) : [];
  if (kept === undefined && (onRecord !== undefined || sealed.length > 0)) {
    throw new ConfigError(
      SECRET_RULE.variable,
      `not set and no ${file}, and this database was set up with a secret: set ${SECRET_RULE.variable} to it (every node and operator command on one database uses the same one), or use the data dir that holds it`,
    );
  }
  secret = kept ?? relaySecret(config);
  if (sealed.length > 0 && !sealed.some((c) => opens(secret!.value, c))) {
    throw new ConfigError(
      SECRET_RULE.variable,
      `the secret from ${from} opens none of the ${sealed.length} channel key(s) this database holds: every node and operator command on one database must use the secret they were sealed under (set ${SECRET_RULE.variable} to it, or share the data dir that holds it)`,
    );
  }
  const mine = secretFingerprint(secret.value);
  const recorded = await channels.adoptSecretFingerprint(mine, now);
  if (recorded !== mine) {
    throw new ConfigError(
      SECRET_RULE.variable,
      `the secret from ${from} is not the one this database was set up with (fingerprint ${recorded}, this one ${mine}): ` +
        'every node and operator command on one database must use the same secret (set AIGC_RELAY_SECRET to it, or share the data dir that holds it); ' +
        'channel keys sealed and links signed under another could not be opened or checked',
    );
  }
  return secret;
}

/** Whether `secret` opens the channel's sealed SecretKey (it was sealed under it). */
function opens(secret: string, channel: ChannelRecord): boolean {
  try {
    createSecretBox(secret).open(channel.secretKeySealed, channel.id);
    return true;
  } catch {
    return false;
  }
}

/** The relay secret from the variable, else the data dir's file, generated if there is none (no database check). */
export function relaySecret(config: Pick<Config, 'dataDir' | 'secret'>): Secret {
  return loadOrCreateSecret(config.dataDir, 'secret', config.secret, 32, SECRET_RULE);
}

/** What the database keeps of the relay secret: a keyed hash that tells secrets apart and reveals nothing of them. */
export function secretFingerprint(secret: string): string {
  return createHmac('sha256', secret).update('aigc-relay relay secret fingerprint v1').digest('base64url').slice(0, 22);
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
