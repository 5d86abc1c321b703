import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config/env';
import { runCli } from '../helpers/child';
import { tempDir } from '../helpers/relay';

describe('configuration', () => {
  it('has the contract defaults', () => {
    const config = loadConfig({});
    expect(config).toMatchObject({ host: '127.0.0.1', port: 8080, previewDelayMs: 1500, instantProvider: false, allowPrivateUrls: [] });
    expect(config.dataDir).toMatch(/\/data$/);
    expect(config.databaseUrl).toBeUndefined();
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
  ])('%s=%s is refused naming the variable', (name, value) => {
    expect(() => loadConfig({ [name]: value })).toThrow(ConfigError);
    expect(() => loadConfig({ [name]: value })).toThrow(new RegExp(`^${name}: `));
  });

  it('a bad value stops `serve` with one clear line and exit code 1', async () => {
    const run = await runCli(['serve'], { AIGC_RELAY_PORT: 'eighty', AIGC_RELAY_DATA_DIR: tempDir() });
    expect(run.code).toBe(1);
    expect(run.stderr.trim().split('\n')).toEqual(['aigc-relay: invalid configuration: AIGC_RELAY_PORT: "eighty" is not a whole number']);
  });
});
