import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { loadOrCreateSecret, openRelaySecret, relaySecret, secretFingerprint } from '../../src/app/secrets';
import { createSecretBox } from '../../src/app/secret-box';
import type { ChannelRecord } from '../../src/ports/channels';
import { ConfigError, loadConfig } from '../../src/config/env';
import { runCli } from '../helpers/child';
import { tempDir } from '../helpers/relay';

/**
 * The admin token and the relay secret, from the environment or the data dir. A value that cannot work must stop
 * the start with one line: an admin token with a space can never be sent as `Bearer <token>` (every admin call was
 * a 401), and an empty secret file (a crash between creating the file and writing it, or an operator's edit) made
 * the relay sign file links and seal channel keys with an empty key, which anyone can forge.
 */
describe('admin token and relay secret', () => {
  it('AIGC_RELAY_ADMIN_TOKEN must be something a client can send as "Authorization: Bearer <token>"', () => {
    for (const token of ['my long admin token phrase', 'tab\tseparated-admin-token', 'ünïcödé-admin-token-0123']) {
      expect(() => loadConfig({ AIGC_RELAY_ADMIN_TOKEN: token })).toThrow(ConfigError);
      expect(() => loadConfig({ AIGC_RELAY_ADMIN_TOKEN: token })).toThrow(/^AIGC_RELAY_ADMIN_TOKEN: /);
    }
    expect(loadConfig({ AIGC_RELAY_ADMIN_TOKEN: 'Abc-123._~+/=xyz0' }).adminToken).toBe('Abc-123._~+/=xyz0');
  });

  it.each([
    ['secret', 'AIGC_RELAY_SECRET', 32, ''],
    ['secret', 'AIGC_RELAY_SECRET', 32, 'short\n'],
    ['admin-token', 'AIGC_RELAY_ADMIN_TOKEN', 16, '\n'],
    ['admin-token', 'AIGC_RELAY_ADMIN_TOKEN', 16, 'my own admin token with spaces\n'],
  ])('a %s file (%s, at least %i characters) holding %j: refused with a ConfigError naming the variable and the file', (fileName, variable, minLength, content) => {
    const dataDir = tempDir();
    const file = path.join(dataDir, fileName);
    fs.writeFileSync(file, content);
    const load = () => loadOrCreateSecret(dataDir, fileName, undefined, 32, { variable, minLength, token: fileName === 'admin-token' });
    expect(load).toThrow(ConfigError);
    expect(load).toThrow(new RegExp(`^${variable}: ${file}: `));
    expect(fs.readFileSync(file, 'utf8')).toBe(content);
  });

  it('a generated one is kept and read back', () => {
    const dataDir = tempDir();
    const rule = { variable: 'AIGC_RELAY_SECRET', minLength: 32 };
    const made = loadOrCreateSecret(dataDir, 'secret', undefined, 32, rule);
    expect(made.created).toBe(true);
    expect(loadOrCreateSecret(dataDir, 'secret', undefined, 32, rule)).toEqual({ value: made.value, created: false });
  });

  it('two processes generating at once agree on one value: the other never reads the file half-written (and refuses to start)', () => {
    const dataDir = tempDir();
    const rule = { variable: 'AIGC_RELAY_SECRET', minLength: 32 };
    // The other process (a node sharing the data dir, a CLI command) looks while this one is writing its value.
    let other: ReturnType<typeof loadOrCreateSecret> | unknown;
    let looked = false;
    const write = fs.writeSync;
    const spy = vi.spyOn(fs, 'writeSync').mockImplementation(((...args: Parameters<typeof fs.writeSync>) => {
      if (!looked) {
        looked = true;
        try {
          other = loadOrCreateSecret(dataDir, 'secret', undefined, 32, rule);
        } catch (err) {
          other = err;
        }
      }
      return (write as (...a: unknown[]) => number)(...args);
    }) as typeof fs.writeSync);
    try {
      const mine = loadOrCreateSecret(dataDir, 'secret', undefined, 32, rule);
      expect(other).not.toBeInstanceOf(Error);
      expect((other as { value: string }).value).toBe(mine.value);
      expect(fs.readFileSync(path.join(dataDir, 'secret'), 'utf8').trim()).toBe(mine.value);
      // Exactly one of them made it (and would print it, for the admin token).
      expect([mine.created, (other as { created: boolean }).created].filter(Boolean)).toHaveLength(1);
      expect(fs.readdirSync(dataDir)).toEqual(['secret']); // nothing left behind
    } finally {
      spy.mockRestore();
    }
  });

  it('on a file system without hard links the secret is still made (and still not overwritten when it exists)', () => {
    const dataDir = tempDir();
    const rule = { variable: 'AIGC_RELAY_SECRET', minLength: 32 };
    const spy = vi.spyOn(fs, 'linkSync').mockImplementation(() => {
      throw Object.assign(new Error('operation not permitted'), { code: 'EPERM' });
    });
    try {
      const made = loadOrCreateSecret(dataDir, 'secret', undefined, 32, rule);
      expect(made.created).toBe(true);
      expect(fs.readFileSync(path.join(dataDir, 'secret'), 'utf8').trim()).toBe(made.value);
      expect(loadOrCreateSecret(dataDir, 'secret', undefined, 32, rule)).toEqual({ value: made.value, created: false });
      expect(fs.readdirSync(dataDir)).toEqual(['secret']);
    } finally {
      spy.mockRestore();
    }
  });

  it('without hard links the placed file itself is flushed before the secret is used (a power cut leaves no empty file behind a printed token)', () => {
    const dataDir = tempDir();
    const file = path.join(dataDir, 'admin_token');
    const rule = { variable: 'AIGC_RELAY_ADMIN_TOKEN', minLength: 16 };
    const opened = new Map<number, string>();
    const flushed: string[] = [];
    const realOpen = fs.openSync.bind(fs);
    const realFsync = fs.fsyncSync.bind(fs);
    const spies = [
      vi.spyOn(fs, 'linkSync').mockImplementation(() => {
        throw Object.assign(new Error('operation not permitted'), { code: 'EPERM' });
      }),
      vi.spyOn(fs, 'openSync').mockImplementation(((p: fs.PathLike, ...rest: unknown[]) => {
        const fd = (realOpen as (...a: unknown[]) => number)(p, ...rest);
        opened.set(fd, String(p));
        return fd;
      }) as typeof fs.openSync),
      vi.spyOn(fs, 'fsyncSync').mockImplementation((fd: number) => {
        flushed.push(opened.get(fd) ?? '?');
        realFsync(fd);
      }),
    ];
    try {
      const made = loadOrCreateSecret(dataDir, 'admin_token', undefined, 24, rule);
      expect(made.created).toBe(true);
      expect(flushed).toContain(file);
      expect(fs.readFileSync(file, 'utf8').trim()).toBe(made.value);
      expect(fs.statSync(file).mode & 0o777).toBe(0o600);
      expect(fs.readdirSync(dataDir)).toEqual(['admin_token']);
    } finally {
      for (const spy of spies) spy.mockRestore();
    }
  });

  it('a command on a data dir with an empty secret file: one line naming the variable, exit 1', async () => {
    const dataDir = tempDir();
    fs.writeFileSync(path.join(dataDir, 'secret'), '');
    const add = ['channels', 'add', '--name', 'main', '--secret-id', 'AKID1', '--secret-key', 'sk', '--sub-app-id', '1'];
    const res = await runCli(add, { AIGC_RELAY_DATA_DIR: dataDir, AIGC_RELAY_SECRET: '' });
    expect(res.code, res.stderr).toBe(1);
    expect(res.stderr).toMatch(/^aigc-relay: invalid configuration: AIGC_RELAY_SECRET: .*secret: empty/);
    expect(res.stderr.trim().split('\n')).toHaveLength(1);
  });

  /** One rule for the server and every command (relay-base.ts opens it for both; end to end in test/cli/relay-secret.test.ts). */
  it('relaySecret: the variable first; else the data dir file, generated by whichever comes first', () => {
    const given = 'a-relay-secret-from-the-environment-0123';
    expect(relaySecret({ dataDir: tempDir(), secret: given })).toEqual({ value: given, created: false });

    const dataDir = tempDir();
    const made = relaySecret({ dataDir });
    expect(made.created).toBe(true);
    expect(relaySecret({ dataDir })).toEqual({ value: made.value, created: false });
    fs.writeFileSync(path.join(dataDir, 'secret'), 'short\n');
    expect(() => relaySecret({ dataDir })).toThrow(/^AIGC_RELAY_SECRET: .*secret: must be at least 32 characters/);
  });

  it('openRelaySecret: the first secret is recorded (by fingerprint); the same passes, another stops, and none is generated against a record', async () => {
    let recorded: string | undefined;
    const channels = {
      adoptSecretFingerprint: async (fingerprint: string) => (recorded ??= fingerprint),
      secretFingerprint: async () => recorded,
      listChannels: async () => [],
    };
    const firstDir = tempDir();
    const first = await openRelaySecret({ dataDir: firstDir }, channels, 1);
    expect(first.created).toBe(true);
    expect(recorded).toBe(secretFingerprint(first.value));
    expect(recorded).not.toContain(first.value.slice(0, 8));
    // The same secret, from the file or from the variable.
    expect((await openRelaySecret({ dataDir: firstDir }, channels, 2)).value).toBe(first.value);
    expect((await openRelaySecret({ dataDir: tempDir(), secret: first.value }, channels, 3)).value).toBe(first.value);

    const other = tempDir();
    fs.writeFileSync(path.join(other, 'secret'), 'another-relay-secret-0123456789abcdef00\n');
    await expect(openRelaySecret({ dataDir: other }, channels, 4)).rejects.toThrow(
      /^AIGC_RELAY_SECRET: the secret from .*secret is not the one this database was set up with/,
    );
    const fresh = tempDir();
    await expect(openRelaySecret({ dataDir: fresh }, channels, 5)).rejects.toThrow(
      /^AIGC_RELAY_SECRET: not set and no .*secret, and this database was set up with a secret: set AIGC_RELAY_SECRET to it/,
    );
    expect(fs.readdirSync(fresh)).toEqual([]);
    expect(recorded).toBe(secretFingerprint(first.value));
  });

  it('openRelaySecret on a database from before fingerprints (channel keys sealed, none recorded): only the secret that opens them becomes the record', async () => {
    const servers = 'the-servers-relay-secret-0123456789abcdef';
    const channel = { id: 'ch-1', secretKeySealed: createSecretBox(servers).seal('tencent-secret-key', 'ch-1') } as ChannelRecord;
    let recorded: string | undefined;
    const channels = {
      adoptSecretFingerprint: async (fingerprint: string) => (recorded ??= fingerprint),
      secretFingerprint: async () => recorded,
      listChannels: async () => [channel],
    };
    // A command on an operator's machine, no variable, a fresh data dir: nothing generated, nothing recorded.
    const fresh = tempDir();
    await expect(openRelaySecret({ dataDir: fresh }, channels, 1)).rejects.toThrow(/^AIGC_RELAY_SECRET: not set and no .*secret, and this database was set up with a secret/);
    expect(fs.readdirSync(fresh)).toEqual([]);
    // A secret of its own (a stale data/secret, a typo in the variable): refused, nothing recorded.
    await expect(openRelaySecret({ dataDir: tempDir(), secret: 'not-the-servers-secret-0123456789abcdef' }, channels, 2)).rejects.toThrow(
      /^AIGC_RELAY_SECRET: the secret from AIGC_RELAY_SECRET opens none of the 1 channel key\(s\) this database holds/,
    );
    expect(recorded).toBeUndefined();
    // The servers' own secret is recorded.
    await openRelaySecret({ dataDir: tempDir(), secret: servers }, channels, 3);
    expect(recorded).toBe(secretFingerprint(servers));
  });
});
