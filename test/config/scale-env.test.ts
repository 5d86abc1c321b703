import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config/env';

describe('scale-out settings', () => {
  it('defaults: 30 s leases, a pool of 10, a generated node id', () => {
    const config = loadConfig({});
    expect(config).toMatchObject({ leaseMs: 30_000, dbPoolSize: 10 });
    expect(config.nodeId).toBeUndefined();
    expect(config.databaseUrl).toBeUndefined();
  });

  it('reads the database URL, lease, pool size and node id', () => {
    const config = loadConfig({
      AIGC_RELAY_DATABASE_URL: 'postgres://relay@db.internal:5432/relay',
      AIGC_RELAY_LEASE_MS: '5000',
      AIGC_RELAY_DB_POOL_SIZE: '25',
      AIGC_RELAY_NODE_ID: 'eu-1.a',
    });
    expect(config).toMatchObject({ databaseUrl: 'postgres://relay@db.internal:5432/relay', leaseMs: 5000, dbPoolSize: 25, nodeId: 'eu-1.a' });
  });

  it.each([
    ['AIGC_RELAY_DATABASE_URL', 'mysql://x/y'],
    ['AIGC_RELAY_LEASE_MS', '100'],
    ['AIGC_RELAY_DB_POOL_SIZE', 'many'],
    ['AIGC_RELAY_NODE_ID', 'has spaces'],
  ])('refuses %s=%s, naming the variable', (variable, value) => {
    expect(() => loadConfig({ [variable]: value })).toThrow(ConfigError);
    expect(() => loadConfig({ [variable]: value })).toThrow(new RegExp(`^${variable}:`));
  });
});
