import fs from 'node:fs';
import { DEFAULT_PRICES, parsePriceTable, priceTableOf, type PriceTable } from '../domain/pricing';
import { ConfigError, type Config } from './env';

const READ_ERRORS: Readonly<Record<string, string>> = {
  ENOENT: 'no such file',
  EACCES: 'permission denied',
  EISDIR: 'is a directory',
};

/**
 * The table named by AIGC_RELAY_PRICES_FILE, or the built-in one. The file is part of the configuration, so a file
 * that cannot be read or is not a valid table stops start-up like any other bad setting: a ConfigError naming the
 * variable, not a stack trace from deep inside start-up.
 */
export function startingPrices(config: Pick<Config, 'pricesFile'>): { prices: PriceTable; source: 'file' | 'default' } {
  const file = config.pricesFile;
  if (!file) return { prices: DEFAULT_PRICES, source: 'default' };
  const problem = (reason: string) => new ConfigError('AIGC_RELAY_PRICES_FILE', `${file}: ${reason}`);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? '';
    throw problem(`cannot read it (${READ_ERRORS[code] ?? (code || (err as Error).message)})`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw problem(`not valid JSON (${(err as Error).message})`);
  }
  try {
    return { prices: parsePriceTable(priceTableOf(raw)), source: 'file' };
  } catch (err) {
    // A FieldError names the entry (`prices.GEM:3: not a model version; …`), as PUT /admin/v1/prices does.
    throw problem((err as Error).message);
  }
}
