import { lockDataDir } from '../adapters/sqlite/serve-lock';
import { ConfigError, type Config } from '../config/env';
import { createRelay } from '../main';

const SHUTDOWN_DEADLINE_MS = 30_000;

function lockOrRefuse(dataDir: string): void {
  let locked: boolean;
  try {
    locked = lockDataDir(dataDir);
  } catch (err) {
    throw new ConfigError('AIGC_RELAY_DATA_DIR', `cannot be used: ${(err as Error).message}`);
  }
  if (!locked) {
    throw new ConfigError('AIGC_RELAY_DATA_DIR', `${dataDir} is in use by another aigc-relay serve; stop that one, or give this one a data dir of its own`);
  }
}

/**
 * Where tasks go, as the banner says it. With upstream channels in service, the tasks of the models they serve go
 * to Tencent: the banner said "local preview renderer (… no cloud account needed)" whatever the channels, on every
 * node of a deployment that had them.
 */
function providerLine(config: Config, channels: number): string {
  if (config.instantProvider) return 'INSTANT (fixed 64x64 PNG; benchmark stand-in, not for real use)';
  const preview = `local preview renderer (${config.previewDelayMs} ms per image`;
  if (channels === 0) return `${preview}; no cloud account needed)`;
  return `Tencent VOD (${channels} upstream channel${channels === 1 ? '' : 's'} in service); ${preview}) for the models no channel serves`;
}

/** `aigc-relay serve` (what `npm start` runs): listen, print how to try it, drain on SIGTERM. */
export async function serve(config: Config): Promise<void> {
  // Taken first: whoever stops `npm start` may do it as soon as the banner is out (see below).
  const parent = process.ppid;
  // On SQLite, before anything reads the database: the start's crash recovery must not take another serve's tasks.
  if (config.databaseUrl === undefined) lockOrRefuse(config.dataDir);
  const relay = await createRelay(config);
  let url: string;
  try {
    url = await relay.listen();
  } catch (err) {
    // The token this start generated is kept in the data dir, and a later start will not print it: now or never.
    if (relay.firstStart.adminToken) process.stdout.write(adminTokenLines(config, relay.firstStart.adminToken).join('\n') + '\n');
    throw err;
  }
  // Built whole and written once, so a reader of stdout sees the banner in one piece.
  const lines: string[] = [];
  const out = (line = '') => lines.push(line);
  out();
  // The bound address always: with port 0 it is the only place the chosen port appears.
  out(`aigc-relay listening on ${relay.localUrl()}`);
  if (config.publicUrl) out(`  public:   ${url} (AIGC_RELAY_PUBLIC_URL: the base of every URL the API returns)`);
  out(`  provider: ${providerLine(config, relay.channelsInService())}`);
  out(`  data:     ${config.dataDir}`);
  out(`  docs:     ${url}/docs   openapi: ${url}/openapi.json   metrics: ${url}/metrics`);
  if (config.instantProvider) out('  WARNING: AIGC_RELAY_INSTANT_PROVIDER=1: every task answers at once with a fixed small PNG.');
  if (relay.firstStart.adminToken) {
    out();
    for (const line of adminTokenLines(config, relay.firstStart.adminToken)) out(line);
  }
  if (relay.firstStart.devKey) {
    const body = JSON.stringify({
      model_name: 'GEM',
      model_version: '3.0',
      prompt: 'a lighthouse on a cliff at dawn, watercolor',
      output_config: { resolution: '1080P', aspect_ratio: '16:9' },
    });
    out();
    out('Created account "dev" with an API key (shown once, never again):');
    out(`  ${relay.firstStart.devKey}`);
    out();
    out('Try it:');
    out(`  curl -sS ${url}/tencent-vod/v1/aigc-image -H 'Authorization: Bearer ${relay.firstStart.devKey}' -H 'Content-Type: application/json' -d '${body}'`);
    out(`  then poll the status_url it returns with the same Authorization header;`);
    out(`  the key's balance, prices and tasks: ${url}/tencent-vod/v1/account, …/prices, …/requests`);
  }
  out();
  process.stdout.write(`${lines.join('\n')}\n`);

  // State lives in the database, so a stray rejection is logged rather than allowed to kill in-flight work.
  process.on('unhandledRejection', (err) => relay.logger.error({ err }, 'unhandled rejection'));

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    relay.logger.info({ signal }, 'draining');
    // A client that never reads its response would hold the HTTP server open forever. Everything that matters is
    // already durable by then (unfinished tasks are handed back on the next start), so stop waiting at some point.
    setTimeout(() => {
      relay.logger.warn({ afterMs: SHUTDOWN_DEADLINE_MS }, 'shutdown deadline passed; exiting with connections still open');
      process.exit(0);
    }, SHUTDOWN_DEADLINE_MS).unref();
    relay
      .close()
      .then(() => process.exit(0))
      .catch((err: unknown) => {
        relay.logger.error({ err }, 'shutdown failed');
        process.exit(1);
      });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  // Under `npm start`, npm passes a SIGTERM to the shell it ran this under, and a shell like dash passes it on to
  // nothing: the shell exits, and this process would go on serving, orphaned, holding the data dir, under whatever
  // stopped it. So there, the parent going away is the stop. (Only under npm: a relay started with `nohup … &`
  // outlives its shell on purpose.)
  if (process.env.npm_lifecycle_event !== undefined) {
    setInterval(() => process.ppid !== parent && stop('parent exited'), PARENT_CHECK_MS).unref();
  }
}

/** How often a relay run by npm looks whether its parent is still there. */
const PARENT_CHECK_MS = 500;

const adminTokenLines = (config: Config, token: string): string[] => [
  `Admin token (shown once; also kept in ${config.dataDir}/admin-token):`,
  `  ${token}`,
];
