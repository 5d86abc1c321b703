import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { CONFIG_VARIABLES, ConfigError, loadConfig, unknownVariables } from '../../src/config/env';
import { startingPrices } from '../../src/config/prices-file';
import { DEFAULT_PRICES } from '../../src/domain/pricing';
import { runCli } from '../helpers/child';
import { tempDir } from '../helpers/relay';

describe('configuration', () => {
  it('has the contract defaults', () => {
    const config = loadConfig({});
    expect(config).toMatchObject({ host: '127.0.0.1', port: 8080, previewDelayMs: 1500, instantProvider: false, allowPrivateUrls: [] });
    expect(config.dataDir).toMatch(/\/data$/);
    expect(config.databaseUrl).toBeUndefined();
  });

  it('upload quota: 1 GiB by default, in MB, 0 for none', () => {
    expect(loadConfig({}).uploadQuotaBytes).toBe(1024 * 1024 * 1024);
    expect(loadConfig({ AIGC_RELAY_UPLOAD_QUOTA_MB: '5' }).uploadQuotaBytes).toBe(5 * 1024 * 1024);
    expect(loadConfig({ AIGC_RELAY_UPLOAD_QUOTA_MB: '0' }).uploadQuotaBytes).toBeUndefined();
  });

  it('switches read on/off, 1/0 and true/false; billing defaults on, VOD FileIds off', () => {
    expect(loadConfig({})).toMatchObject({ billing: true, vodFileIds: false });
    expect(loadConfig({ AIGC_RELAY_BILLING: 'OFF', AIGC_RELAY_VOD_FILE_IDS: 'on' })).toMatchObject({ billing: false, vodFileIds: true });
    expect(loadConfig({ AIGC_RELAY_BILLING: '0', AIGC_RELAY_VOD_FILE_IDS: 'true' })).toMatchObject({ billing: false, vodFileIds: true });
    expect(loadConfig({ AIGC_RELAY_BILLING: 'true', AIGC_RELAY_VOD_FILE_IDS: '0' })).toMatchObject({ billing: true, vodFileIds: false });
  });

  it.each([
    ['AIGC_RELAY_PORT', 'eighty'],
    ['AIGC_RELAY_PORT', '70000'],
    ['AIGC_RELAY_PREVIEW_DELAY_MS', '-1'],
    ['AIGC_RELAY_DATABASE_URL', 'mysql://x'],
    ['AIGC_RELAY_PUBLIC_URL', 'not a url'],
    ['AIGC_RELAY_INSTANT_PROVIDER', 'yes please'],
    ['AIGC_RELAY_SECRET', 'short'],
    ['AIGC_RELAY_BILLING', 'maybe'],
    ['AIGC_RELAY_VOD_FILE_IDS', 'yes please'],
    ['AIGC_RELAY_UPLOAD_QUOTA_MB', '-1'],
    ['AIGC_RELAY_UPLOAD_QUOTA_MB', '1.5'],
  ])('%s=%s is refused naming the variable', (name, value) => {
    expect(() => loadConfig({ [name]: value })).toThrow(ConfigError);
    expect(() => loadConfig({ [name]: value })).toThrow(new RegExp(`^${name}: `));
  });

  it('reads exactly the variables CONFIG_VARIABLES lists (the list the misspelling warning checks against)', () => {
    const looked = new Set<string>();
    const env = new Proxy({} as Record<string, string | undefined>, {
      get: (_target, name) => {
        if (typeof name === 'string') looked.add(name);
        return undefined;
      },
    });
    loadConfig(env);
    expect([...looked].filter((n) => n.startsWith('AIGC_RELAY_')).sort()).toEqual([...CONFIG_VARIABLES].sort());
  });

  it('names the AIGC_RELAY_* variables nothing reads, and not the known ones (server or client)', () => {
    expect(unknownVariables({ AIGC_RELAY_DATABASE: 'postgres://x', AIGC_RELAY_PORT: '1', AIGC_RELAY_URL: 'http://x', AIGC_RELAY_KEY: 'k', PATH: '/bin' })).toEqual([
      'AIGC_RELAY_DATABASE',
    ]);
  });

  it('a misspelt variable is named on stderr by the commands, which still run', async () => {
    const run = await runCli(['prices', 'show'], { AIGC_RELAY_DATA_DIR: tempDir(), AIGC_RELAY_DATABASE: 'postgres://127.0.0.1:1/x' });
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr.trim().split('\n')).toEqual(['aigc-relay: warning: ignored, not a variable aigc-relay reads (misspelt?): AIGC_RELAY_DATABASE']);
  });

  it('a bad value stops `serve` with one clear line and exit code 1', async () => {
    const run = await runCli(['serve'], { AIGC_RELAY_PORT: 'eighty', AIGC_RELAY_DATA_DIR: tempDir() });
    expect(run.code).toBe(1);
    expect(run.stderr.trim().split('\n')).toEqual(['aigc-relay: invalid configuration: AIGC_RELAY_PORT: "eighty" is not a whole number']);
  });

  // These two are checked where they are used (the address policy, the file read), after the environment is parsed.
  it('a bad AIGC_RELAY_ALLOW_PRIVATE_URLS entry stops `serve` with the same one line', async () => {
    const run = await runCli(['serve'], { AIGC_RELAY_ALLOW_PRIVATE_URLS: '10.0.0.0/99', AIGC_RELAY_DATA_DIR: tempDir(), AIGC_RELAY_PORT: '0' });
    expect(run.code).toBe(1);
    expect(run.stderr.trim().split('\n')).toEqual([
      'aigc-relay: invalid configuration: AIGC_RELAY_ALLOW_PRIVATE_URLS: "10.0.0.0/99" is not a CIDR range',
    ]);
    // Checked with the rest of the configuration, once: so every command refuses it alike, not only those that fetch.
    expect(() => loadConfig({ AIGC_RELAY_ALLOW_PRIVATE_URLS: 'db.internal, 10.0.0.0/99' })).toThrow('AIGC_RELAY_ALLOW_PRIVATE_URLS: "10.0.0.0/99" is not a CIDR range');
    expect(loadConfig({ AIGC_RELAY_ALLOW_PRIVATE_URLS: 'db.internal, 10.0.0.0/8' }).allowPrivateUrls).toEqual(['db.internal', '10.0.0.0/8']);
  });

  it('an unusable AIGC_RELAY_PRICES_FILE stops `serve` (and `prices show`) with one line naming the variable', async () => {
    const dir = tempDir();
    const missing = path.join(dir, 'missing.json');
    for (const command of [['serve'], ['prices', 'show']]) {
      const run = await runCli(command, { AIGC_RELAY_PRICES_FILE: missing, AIGC_RELAY_DATA_DIR: dir, AIGC_RELAY_PORT: '0' });
      expect(run.code, command.join(' ')).toBe(1);
      expect(run.stderr.trim().split('\n')).toEqual([
        `aigc-relay: invalid configuration: AIGC_RELAY_PRICES_FILE: ${missing}: cannot read it (no such file)`,
      ]);
    }
  });

  it('reads AIGC_RELAY_PRICES_FILE, refusing an unreadable, malformed or incomplete one with a ConfigError', () => {
    const dir = tempDir();
    const file = (name: string, text: string) => {
      fs.writeFileSync(path.join(dir, name), text);
      return path.join(dir, name);
    };
    expect(startingPrices({})).toEqual({ prices: DEFAULT_PRICES, source: 'default' });
    expect(startingPrices({ pricesFile: file('ok.json', JSON.stringify(DEFAULT_PRICES)) })).toEqual({ prices: DEFAULT_PRICES, source: 'file' });
    // What PUT takes, and what GET or `prices show` printed, work as a file too.
    const printed = { prices: DEFAULT_PRICES, classes: {}, source: 'database', updated_at: null, billing: 'on' };
    expect(startingPrices({ pricesFile: file('put.json', JSON.stringify({ prices: DEFAULT_PRICES })) }).prices).toEqual(DEFAULT_PRICES);
    expect(startingPrices({ pricesFile: file('shown.json', JSON.stringify(printed)) }).prices).toEqual(DEFAULT_PRICES);
    for (const [pricesFile, reason] of [
      [dir, 'cannot read it (is a directory)'],
      [file('broken.json', '{\n"GEM:3.0": \n'), 'not valid JSON'],
      [file('short.json', '{}'), 'prices: missing "GEM:2.5"'],
      [file('extra.json', JSON.stringify({ prices: DEFAULT_PRICES, currency: 'USD' })), 'currency: unknown field beside "prices"'],
      // As strict as PUT /admin/v1/prices: a typo'd row is an error, not a row silently ignored.
      [file('typo.json', JSON.stringify({ ...DEFAULT_PRICES, 'GEM:3': { '1K': 1, '2K': 1, '4K': 1 } })), 'prices.GEM:3: not a model version; expected GEM:2.5'],
      [file('class.json', JSON.stringify({ ...DEFAULT_PRICES, 'GEM:2.5': { ...DEFAULT_PRICES['GEM:2.5'], '8K': 1 } })), 'prices.GEM:2.5.8K: not a resolution class'],
    ] as const) {
      expect(() => startingPrices({ pricesFile })).toThrow(ConfigError);
      expect(() => startingPrices({ pricesFile })).toThrow(`AIGC_RELAY_PRICES_FILE: ${pricesFile}: ${reason}`);
    }
  });
});
