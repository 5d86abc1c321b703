import { Command } from 'commander';
import { ConfigError, loadConfig, unknownVariables, type Config } from '../config/env';
import { MODEL_NAMES, MODELS } from '../domain/models';
import { runSubmit } from './submit';
import { accountCommands } from './admin';
import { channelCommands } from './channels';
import { isStoreUnavailable } from '../ports/store';
import { runMigrate } from './migrate';

/** A thin layer: flags → config or arguments → library calls. No relay logic lives here. */
let warnedUnknown = false;
const config = (): Config => {
  const loaded = loadConfig(process.env);
  const unknown = unknownVariables(process.env);
  if (unknown.length > 0 && !warnedUnknown) {
    warnedUnknown = true; // a command may load the configuration more than once
    process.stderr.write(`aigc-relay: warning: ignored, not a variable aigc-relay reads (misspelt?): ${unknown.join(', ')}\n`);
  }
  return loaded;
};

const versionsHelp = MODEL_NAMES.map((m) => `${m}: ${Object.keys(MODELS[m]).join(' or ')}`).join(', ');

const program = new Command('aigc-relay').description('Relay for Tencent Cloud VOD AIGC image generation').showHelpAfterError();

program
  .command('serve')
  .description('serve the API (what `npm start` runs); configured by AIGC_RELAY_* environment variables')
  // Loaded here, not at the top: the server (Fastify, sharp, the Tencent SDK) is most of the CLI's start-up time,
  // and the operator commands need none of it (1.6 s → 0.7 s for `accounts list`).
  .action(async () => (await import('./serve')).serve(config()));

program
  .command('submit')
  .description('submit a task to a running relay over HTTP, show its progress and save the images')
  .option('--prompt <text>', 'what to draw (may be left out with --file)')
  .option('--model <name>', 'GEM, Qwen or Hunyuan', 'GEM')
  .option('--version <version>', `model version (${versionsHelp}; default: the model's newest)`)
  .option('--resolution <resolution>', '720P, 1080P, 2K, 4K or WxH such as 1024x1024')
  .option('--aspect-ratio <ratio>', 'GEM only: 1:1, 16:9, 9:16, …')
  .option('--file <image...>', 'input images: a local jpeg/png/webp (uploaded first), an http(s) URL, or a file id from POST /tencent-vod/v1/files')
  .option('--priority <n>', 'tasks_priority, -10…10')
  .option('--wait', 'wait for the result and save it', false)
  .option('--out <dir>', 'directory for the images (implies --wait)', '.')
  .option('--url <url>', 'relay base URL (or AIGC_RELAY_URL)', process.env.AIGC_RELAY_URL ?? 'http://127.0.0.1:8080')
  // No default from the environment here: commander would print it in --help, and the key with it.
  .option('--key <key>', 'API key (or AIGC_RELAY_KEY)')
  .action(async (options, command: Command) => {
    // An --out given on its own asks for the images: it waits for them (it saved nothing, silently, and exited 0).
    process.exitCode = await runSubmit({ ...options, wait: options.wait || command.getOptionValueSource('out') === 'cli' });
  });

program
  .command('migrate')
  .description('apply pending database migrations (SQLite file, or PostgreSQL at AIGC_RELAY_DATABASE_URL) and exit')
  .action(async () => runMigrate(config()));

accountCommands(program, config);
channelCommands(program, config);

// Some settings can only be checked once a command uses them (an address policy, the price file), so a ConfigError
// is caught here, whichever command and however deep it came from: one line naming the variable, never a stack.
try {
  await program.parseAsync(process.argv);
} catch (err) {
  // A database locked by another process past the busy timeout (a long write, a psql session), or one restarting:
  // the command can simply be run again, which one line says; anything else unexpected keeps its stack, for the bug
  // report.
  if (isStoreUnavailable(err)) {
    process.stderr.write('aigc-relay: the database is busy or unavailable (a lock held elsewhere, a timeout, a restart); try again\n');
    process.exit(1);
  }
  if (!(err instanceof ConfigError)) throw err;
  process.stderr.write(`aigc-relay: invalid configuration: ${err.message.replace(/\s*\n\s*/g, ' ')}\n`);
  process.exit(1);
}
