import { InvalidArgumentError, type Command } from 'commander';
import { createChannelAdmin, type ChannelAdmin } from '../app/channels';
import type { Config } from '../config/env';
import { CHANNEL_RANGES } from '../domain/operator-limits';
import { systemClock } from '../ports/clock';
import { print, withRelayBase } from './admin';
import type { SecretBox } from '../app/secret-box';

/**
 * `aigc-relay channels add|list|disable|enable`: the admin API's channel use cases on the database directly. The
 * SecretKey is sealed with the relay secret the server uses, found under the same rule (app/secrets.ts `relaySecret`,
 * checked against the database's fingerprint of it) and only when a key is sealed. A running
 * server picks the change up within its channel refresh interval (5 s). Health is runtime state: see
 * GET /admin/v1/channels on the server.
 */
const integer = (min: number, max: number) => (value: string): number => {
  if (!/^-?\d+$/.test(value)) throw new InvalidArgumentError('must be a whole number');
  const n = Number(value);
  if (n < min || n > max) throw new InvalidArgumentError(`must be within ${min}…${max}`);
  return n;
};

/** For commands that seal no key (list, enable, disable): they need no relay secret, so none is looked for. */
const SEALS_NOTHING: SecretBox = {
  seal: () => {
    throw new Error('this command seals no channel key (withChannels: say it seals)');
  },
  open: () => {
    throw new Error('this command opens no channel key');
  },
};

async function withChannels(config: Config, run: (channels: ChannelAdmin) => Promise<void>, seals = false): Promise<void> {
  await withRelayBase(config, async (base) => {
    const box = seals ? await base.sealingBox() : SEALS_NOTHING;
    await run(createChannelAdmin({ channels: base.store.channels, clock: systemClock, box }));
  });
}

interface AddOptions {
  name: string;
  secretId: string;
  secretKey?: string;
  subAppId: number;
  region?: string;
  endpoint?: string;
  models?: string;
  priority?: number;
  weight?: number;
  maxConcurrency?: number;
  events: boolean;
  disabled: boolean;
}

export function channelCommands(program: Command, config: () => Config): void {
  const channels = program.command('channels').description('manage upstream channels (Tencent VOD accounts)');

  channels
    .command('add')
    .description('add a Tencent VOD channel')
    .requiredOption('--name <name>')
    .requiredOption('--secret-id <id>', 'Tencent Cloud SecretId')
    .option('--secret-key <key>', 'Tencent Cloud SecretKey (or TENCENTCLOUD_SECRET_KEY, which keeps it out of the process list)')
    .requiredOption('--sub-app-id <n>', 'VOD SubAppId', integer(CHANNEL_RANGES.subAppId.min, CHANNEL_RANGES.subAppId.max))
    .option('--region <region>')
    .option('--endpoint <url>', 'API base override, e.g. http://127.0.0.1:9000')
    .option('--models <list>', 'comma-separated: GEM, Qwen, Hunyuan or NAME:VERSION (default all)')
    .option('--priority <n>', 'tier, higher first (default 0)', integer(CHANNEL_RANGES.priority.min, CHANNEL_RANGES.priority.max))
    .option('--weight <n>', 'share within the tier (default 1)', integer(CHANNEL_RANGES.weight.min, CHANNEL_RANGES.weight.max))
    .option('--max-concurrency <n>', 'upstream tasks at once (default 1)', integer(CHANNEL_RANGES.maxConcurrency.min, CHANNEL_RANGES.maxConcurrency.max))
    .option('--events', 'also follow completions with PullEvents/ConfirmEvents', false)
    .option('--disabled', 'add it disabled', false)
    .action(async (o: AddOptions) => {
      const secretKey = o.secretKey ?? process.env.TENCENTCLOUD_SECRET_KEY;
      if (!secretKey) {
        process.stderr.write('aigc-relay: give --secret-key or set TENCENTCLOUD_SECRET_KEY\n');
        process.exitCode = 1;
        return;
      }
      await withChannels(config(), async (admin) =>
        print(
          await admin.create({
            provider: 'tencent-vod',
            name: o.name,
            secret_id: o.secretId,
            secret_key: secretKey,
            sub_app_id: o.subAppId,
            enabled: !o.disabled,
            events_enabled: o.events,
            ...(o.region ? { region: o.region } : {}),
            ...(o.endpoint ? { endpoint: o.endpoint } : {}),
            ...(o.models ? { models: o.models.split(',').map((m) => m.trim()).filter(Boolean) } : {}),
            ...(o.priority !== undefined ? { priority: o.priority } : {}),
            ...(o.weight !== undefined ? { weight: o.weight } : {}),
            ...(o.maxConcurrency !== undefined ? { max_concurrency: o.maxConcurrency } : {}),
          }),
        ),
        true,
      );
    });

  channels
    .command('list')
    .description('list channels (never their secret keys)')
    .action(async () => withChannels(config(), async (admin) => print({ channels: await admin.list() })));

  channels
    .command('disable <id>')
    .description('stop sending new tasks to a channel (its running tasks are still followed)')
    .action(async (id: string) => withChannels(config(), async (admin) => print(await admin.update(id, { enabled: false }))));

  channels
    .command('enable <id>')
    .action(async (id: string) => withChannels(config(), async (admin) => print(await admin.update(id, { enabled: true }))));
}
