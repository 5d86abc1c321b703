import path from 'node:path';
import { createAddressPolicy } from '../adapters/http-fetch/address-policy';

/**
 * Configuration comes from the environment, parsed and checked once at start-up. A bad value stops the process
 * with one line naming the variable (see `ConfigError`); nothing below reads `process.env` again.
 */
export interface Config {
  readonly host: string;
  readonly port: number;
  readonly dataDir: string;
  /** `undefined` = embedded SQLite in `dataDir`. */
  readonly databaseUrl?: string;
  readonly adminToken?: string;
  /** `undefined` = `http://HOST:PORT` once the port is known. */
  readonly publicUrl?: string;
  readonly secret?: string;
  readonly previewDelayMs: number;
  readonly instantProvider: boolean;
  readonly allowPrivateUrls: readonly string[];
  readonly logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /** Tasks the local preview renderer runs at once. */
  readonly previewConcurrency: number;
  /** Tasks waiting in the queue beyond which submits get 503. */
  readonly maxQueued: number;
  /** Credits the `dev` account starts with on a fresh database. */
  readonly devBalance: number;
  /** Optional JSON price table that replaces the built-in one. */
  readonly pricesFile?: string;
  /**
   * AIGC_RELAY_BILLING (on|off, default on). Off: tasks are accepted at price 0 with no balance check, no hold and
   * no ledger rows (rate and concurrency limits still apply). For benchmarks and free internal deployments.
   */
  readonly billing: boolean;
  /**
   * AIGC_RELAY_VOD_FILE_IDS (on|off, default off). On: a digit-only `file_id` is passed to Tencent as a FileId of the
   * channel's VOD app. Off: it is refused like any unknown file. The relay cannot tell whose media a VOD FileId is,
   * and Tencent's FileIds are close to sequential, so on a relay shared by several customers one could feed another's
   * stored images to a model. Turn it on only where every client may use every media file of the VOD apps.
   */
  readonly vodFileIds: boolean;
  /**
   * AIGC_RELAY_SQLITE_WRITER (thread|inline, default DEFAULT_SQLITE_WRITER): where the embedded store's
   * request-path writes run, on a writer thread of their own or on the main thread (adapters/sqlite/index.ts). The
   * benchmark measures both in the same rounds (BENCHMARKS.md).
   */
  readonly sqliteWriter: 'thread' | 'inline';
  /** AIGC_RELAY_FILE_WRITER (thread|inline, default thread): where output images are written (adapters/fs/file-storage.ts). */
  readonly fileWriter: 'thread' | 'inline';
  /** A client must send all its request headers within this (slow-loris guard). */
  readonly headersTimeoutMs: number;
  /** …and its whole request, body included; at least `headersTimeoutMs`. */
  readonly requestTimeoutMs: number;
  /**
   * With a database URL (several nodes): how long a node's claim on a task lasts without renewal before another
   * node takes the task over (AIGC_RELAY_LEASE_MS, default 30 s), this node's name in `tasks.lease_owner`
   * (AIGC_RELAY_NODE_ID, default host-pid-random) and its connection pool size (AIGC_RELAY_DB_POOL_SIZE).
   */
  readonly leaseMs: number;
  /**
   * AIGC_RELAY_TENCENT_SUBMITS_PER_SECOND (default 20, Tencent's default per account): CreateAigcImageTask calls the relay
   * sends one upstream account in any second; on PostgreSQL the nodes share it (give every node the same value).
   */
  readonly tencentSubmitsPerSecond: number;
  readonly nodeId?: string;
  readonly dbPoolSize: number;
  /** AIGC_RELAY_UPLOAD_QUOTA_MB (default 1024; 0 = none): what one account's uploads may take, in bytes. */
  readonly uploadQuotaBytes: number | undefined;
}

export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    reason: string,
  ) {
    super(`${variable}: ${reason}`);
    this.name = 'ConfigError';
  }
}

type Env = Readonly<Record<string, string | undefined>>;

/** Every AIGC_RELAY_* variable the server and the operator commands read (a test holds loadConfig to this list). */
export const CONFIG_VARIABLES = [
  'AIGC_RELAY_HOST',
  'AIGC_RELAY_PORT',
  'AIGC_RELAY_DATA_DIR',
  'AIGC_RELAY_DATABASE_URL',
  'AIGC_RELAY_ADMIN_TOKEN',
  'AIGC_RELAY_PUBLIC_URL',
  'AIGC_RELAY_SECRET',
  'AIGC_RELAY_PREVIEW_DELAY_MS',
  'AIGC_RELAY_INSTANT_PROVIDER',
  'AIGC_RELAY_ALLOW_PRIVATE_URLS',
  'AIGC_RELAY_LOG_LEVEL',
  'AIGC_RELAY_PREVIEW_CONCURRENCY',
  'AIGC_RELAY_MAX_QUEUED',
  'AIGC_RELAY_DEV_BALANCE',
  'AIGC_RELAY_PRICES_FILE',
  'AIGC_RELAY_BILLING',
  'AIGC_RELAY_VOD_FILE_IDS',
  'AIGC_RELAY_SQLITE_WRITER',
  'AIGC_RELAY_FILE_WRITER',
  'AIGC_RELAY_HEADERS_TIMEOUT_MS',
  'AIGC_RELAY_REQUEST_TIMEOUT_MS',
  'AIGC_RELAY_LEASE_MS',
  'AIGC_RELAY_NODE_ID',
  'AIGC_RELAY_DB_POOL_SIZE',
  'AIGC_RELAY_UPLOAD_QUOTA_MB',
  'AIGC_RELAY_TENCENT_SUBMITS_PER_SECOND',
] as const;

/** Read by `aigc-relay submit`, the HTTP client, not by the server. */
const CLIENT_VARIABLES = ['AIGC_RELAY_URL', 'AIGC_RELAY_KEY'];

/**
 * AIGC_RELAY_* names in the environment that nothing reads: most likely a misspelling (AIGC_RELAY_DATABASE for
 * AIGC_RELAY_DATABASE_URL), which would otherwise start the relay on its defaults without a word. Reported, not
 * refused: an environment shared with a newer or older version may carry names this one does not know.
 */
export function unknownVariables(env: Env): string[] {
  const known = new Set<string>([...CONFIG_VARIABLES, ...CLIENT_VARIABLES]);
  return Object.keys(env)
    .filter((name) => name.startsWith('AIGC_RELAY_') && !known.has(name))
    .sort();
}

/** Where the SQLite request-path writes run unless AIGC_RELAY_SQLITE_WRITER says otherwise. */
export const DEFAULT_SQLITE_WRITER: 'thread' | 'inline' = 'thread';

function read(env: Env, name: string): string | undefined {
  const value = env[name];
  return value === undefined || value.trim() === '' ? undefined : value.trim();
}

function integer(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = read(env, name);
  if (raw === undefined) return fallback;
  if (!/^-?\d+$/.test(raw)) throw new ConfigError(name, `${JSON.stringify(raw)} is not a whole number`);
  const value = Number(raw);
  if (value < min || value > max) throw new ConfigError(name, `${value} is outside ${min}…${max}`);
  return value;
}

const megabytesOrNone = (mb: number): number | undefined => (mb === 0 ? undefined : mb * 1024 * 1024);

function onOff(env: Env, name: string, fallback: boolean): boolean {
  const raw = read(env, name)?.toLowerCase();
  if (raw === undefined) return fallback;
  if (['on', '1', 'true'].includes(raw)) return true;
  if (['off', '0', 'false'].includes(raw)) return false;
  throw new ConfigError(name, 'must be on or off');
}

function url(env: Env, name: string, protocols: readonly string[]): string | undefined {
  const raw = read(env, name);
  if (raw === undefined) return undefined;
  let parsed: URL;
  try {
    parsed = new URL(raw);
  } catch {
    throw new ConfigError(name, `${JSON.stringify(withoutCredentials(raw))} is not a URL`);
  }
  if (!protocols.includes(parsed.protocol)) {
    throw new ConfigError(name, `must start with ${protocols.map((p) => `${p}//`).join(' or ')}`);
  }
  return raw.replace(/\/+$/, '');
}

/**
 * A URL as it may be shown (this line goes to the log): without what stands before the last `@` (a database URL's user
 * and password) and without the value of a `password` or `sslpassword` query parameter (PostgreSQL takes both there).
 */
function withoutCredentials(raw: string): string {
  return raw.replace(/(\/\/).*@/s, '$1…@').replace(/([?&](?:ssl)?password=)[^&#]*/gi, '$1…');
}

/** What an admin token or relay secret must be, from the environment or from its file in the data dir. */
export interface CredentialRule {
  readonly variable: string;
  readonly minLength: number;
  /** Sent by clients as `Authorization: Bearer <token>`, so it must be one header-safe word. */
  readonly token?: boolean;
}
export const ADMIN_TOKEN_RULE: CredentialRule = { variable: 'AIGC_RELAY_ADMIN_TOKEN', minLength: 16, token: true };
export const SECRET_RULE: CredentialRule = { variable: 'AIGC_RELAY_SECRET', minLength: 32 };

/**
 * Why `value` cannot serve, or undefined. A token with a space, a control or a non-ASCII character can never be
 * presented (the Authorization header carries one word of ASCII), so every admin call would be a 401.
 */
export function credentialProblem(value: string, rule: CredentialRule): string | undefined {
  if (value.length === 0) return 'empty';
  if (value.length < rule.minLength) return `must be at least ${rule.minLength} characters`;
  if (rule.token && !/^[\x21-\x7e]+$/.test(value)) return 'use printable ASCII without spaces: it is sent as "Authorization: Bearer <token>"';
  return undefined;
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

export function loadConfig(env: Env = process.env): Config {
  const host = read(env, 'AIGC_RELAY_HOST') ?? '127.0.0.1';
  if (!/^[A-Za-z0-9.:\-[\]]+$/.test(host)) throw new ConfigError('AIGC_RELAY_HOST', `${JSON.stringify(host)} is not a host`);

  const instant = read(env, 'AIGC_RELAY_INSTANT_PROVIDER');
  if (instant !== undefined && !['0', '1', 'true', 'false'].includes(instant)) {
    throw new ConfigError('AIGC_RELAY_INSTANT_PROVIDER', 'must be 1 or 0');
  }


  const sqliteWriter = (read(env, 'AIGC_RELAY_SQLITE_WRITER') ?? DEFAULT_SQLITE_WRITER).toLowerCase();
  if (sqliteWriter !== 'thread' && sqliteWriter !== 'inline') {
    throw new ConfigError('AIGC_RELAY_SQLITE_WRITER', 'must be thread or inline');
  }

  const fileWriter = (read(env, 'AIGC_RELAY_FILE_WRITER') ?? 'thread').toLowerCase();
  if (fileWriter !== 'thread' && fileWriter !== 'inline') {
    throw new ConfigError('AIGC_RELAY_FILE_WRITER', 'must be thread or inline');
  }

  const logLevel = (read(env, 'AIGC_RELAY_LOG_LEVEL') ?? 'info') as Config['logLevel'];
  if (!LOG_LEVELS.includes(logLevel)) {
    throw new ConfigError('AIGC_RELAY_LOG_LEVEL', `must be one of ${LOG_LEVELS.join(', ')}`);
  }

  const adminToken = read(env, 'AIGC_RELAY_ADMIN_TOKEN');
  const tokenProblem = adminToken === undefined ? undefined : credentialProblem(adminToken, ADMIN_TOKEN_RULE);
  if (tokenProblem) throw new ConfigError('AIGC_RELAY_ADMIN_TOKEN', tokenProblem);
  const secret = read(env, 'AIGC_RELAY_SECRET');
  const secretProblem = secret === undefined ? undefined : credentialProblem(secret, SECRET_RULE);
  if (secretProblem) throw new ConfigError('AIGC_RELAY_SECRET', secretProblem);

  const allowPrivateUrls = (read(env, 'AIGC_RELAY_ALLOW_PRIVATE_URLS') ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  try {
    createAddressPolicy(allowPrivateUrls); // checked here, once: what uses it later may assume it parses
  } catch (err) {
    throw new ConfigError('AIGC_RELAY_ALLOW_PRIVATE_URLS', (err as Error).message);
  }

  const config: Config = {
    host,
    port: integer(env, 'AIGC_RELAY_PORT', 8080, 0, 65535),
    dataDir: path.resolve(read(env, 'AIGC_RELAY_DATA_DIR') ?? './data'),
    previewDelayMs: integer(env, 'AIGC_RELAY_PREVIEW_DELAY_MS', 1500, 0, 600_000),
    instantProvider: instant === '1' || instant === 'true',
    allowPrivateUrls,
    logLevel,
    previewConcurrency: integer(env, 'AIGC_RELAY_PREVIEW_CONCURRENCY', 2, 1, 256),
    maxQueued: integer(env, 'AIGC_RELAY_MAX_QUEUED', 100_000, 1, 10_000_000),
    devBalance: integer(env, 'AIGC_RELAY_DEV_BALANCE', 100_000, 0, Number.MAX_SAFE_INTEGER),
    billing: onOff(env, 'AIGC_RELAY_BILLING', true),
    vodFileIds: onOff(env, 'AIGC_RELAY_VOD_FILE_IDS', false),
    sqliteWriter,
    fileWriter,
    headersTimeoutMs: integer(env, 'AIGC_RELAY_HEADERS_TIMEOUT_MS', 10_000, 100, 600_000),
    requestTimeoutMs: integer(env, 'AIGC_RELAY_REQUEST_TIMEOUT_MS', 120_000, 100, 3_600_000),
    leaseMs: integer(env, 'AIGC_RELAY_LEASE_MS', 30_000, 500, 3_600_000),
    tencentSubmitsPerSecond: integer(env, 'AIGC_RELAY_TENCENT_SUBMITS_PER_SECOND', 20, 1, 10_000),
    dbPoolSize: integer(env, 'AIGC_RELAY_DB_POOL_SIZE', 10, 2, 1000),
    uploadQuotaBytes: megabytesOrNone(integer(env, 'AIGC_RELAY_UPLOAD_QUOTA_MB', 1024, 0, 1_000_000_000)),
  };
  if (config.requestTimeoutMs < config.headersTimeoutMs) {
    throw new ConfigError('AIGC_RELAY_REQUEST_TIMEOUT_MS', `must be at least AIGC_RELAY_HEADERS_TIMEOUT_MS (${config.headersTimeoutMs})`);
  }
  const optional: { databaseUrl?: string; publicUrl?: string; pricesFile?: string } = {};
  const databaseUrl = url(env, 'AIGC_RELAY_DATABASE_URL', ['postgres:', 'postgresql:']);
  if (databaseUrl) optional.databaseUrl = databaseUrl;
  const nodeId = read(env, 'AIGC_RELAY_NODE_ID');
  if (nodeId !== undefined && !/^[A-Za-z0-9._:-]{1,100}$/.test(nodeId)) {
    throw new ConfigError('AIGC_RELAY_NODE_ID', 'use 1-100 letters, digits, dots, dashes, colons or underscores');
  }
  const publicUrl = url(env, 'AIGC_RELAY_PUBLIC_URL', ['http:', 'https:']);
  if (publicUrl) optional.publicUrl = publicUrl;
  const pricesFile = read(env, 'AIGC_RELAY_PRICES_FILE');
  if (pricesFile) optional.pricesFile = path.resolve(pricesFile);
  return {
    ...config,
    ...optional,
    ...(adminToken ? { adminToken } : {}),
    ...(secret ? { secret } : {}),
    ...(nodeId ? { nodeId } : {}),
  };
}
