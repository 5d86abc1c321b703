import { FieldError } from './errors';
import { MODELS, modelSpec } from './models';
import { megapixels, outputSize, producedSize } from './output-size';
import type { TaskInput } from './task-input';

/**
 * Prices are whole credits (never floats) per model version and resolution class (see `priceClass`), so `2K` and
 * `2560x1440` cost the same.
 */
export const PRICE_CLASSES = ['1K', '2K', '4K'] as const;
export type PriceClass = (typeof PRICE_CLASSES)[number];

/** `"GEM:3.0" → { "1K": 40, "2K": 60, "4K": 100 }` */
export type PriceTable = Readonly<Record<string, Readonly<Record<PriceClass, number>>>>;

export const DEFAULT_PRICES: PriceTable = {
  'GEM:2.5': { '1K': 30, '2K': 45, '4K': 80 },
  'GEM:3.0': { '1K': 40, '2K': 60, '4K': 100 },
  'Qwen:0925': { '1K': 20, '2K': 30, '4K': 50 },
  'Hunyuan:3.0': { '1K': 20, '2K': 30, '4K': 50 },
};

/** What a named resolution costs, whatever the aspect ratio: the class the upstream is asked for by that name. */
const NAMED_CLASSES: Readonly<Record<string, PriceClass>> = { '720P': '1K', '1080P': '1K', '2K': '2K', '4K': '4K' };

/**
 * A named resolution is priced by its name (`2K` is class 2K at 1:1 as at 21:9, as the upstream is asked for 2K);
 * an explicit `WxH` by its pixel count (≤ 2.1 MP → 1K, ≤ 4.2 MP → 2K, larger → 4K); no resolution is 1K. A model
 * with size limits is asked for a size, not a name, and is priced by the pixels it makes: a `4K` request to Hunyuan
 * is made at 1024x1024 and costs 1K.
 */
export function priceClass(input: TaskInput): PriceClass {
  const { resolution, aspect_ratio: aspectRatio } = input.output_config;
  if (modelSpec(input.model_name, input.model_version)?.sizeLimits) return classOfPixels(megapixels(producedSize(input)));
  if (resolution === undefined) return '1K';
  return NAMED_CLASSES[resolution] ?? classOfPixels(megapixels(outputSize(resolution, aspectRatio)));
}

function classOfPixels(mp: number): PriceClass {
  if (mp <= 2.1) return '1K';
  if (mp <= 4.2) return '2K';
  return '4K';
}

export function priceOf(table: PriceTable, input: TaskInput): number {
  const row = table[`${input.model_name}:${input.model_version}`];
  // parsePriceTable guarantees a row for every catalogued version, so a miss is a programming error.
  if (!row) throw new Error(`no price for ${input.model_name} ${input.model_version}`);
  return row[priceClass(input)];
}

/** What `GET /admin/v1/prices` shows beside the table: read-only, and ignored when that answer is sent back. */
export const READ_ONLY_PRICE_FIELDS: readonly string[] = ['classes', 'source', 'updated_at', 'billing'];

/**
 * A price document → the table in it. Accepted everywhere a table is read (`PUT /admin/v1/prices`, `aigc-relay
 * prices set FILE`, AIGC_RELAY_PRICES_FILE): the table itself, or an object with the table under `prices` (PUT's
 * body, or what GET answered, whose read-only fields are ignored), so what one place shows, another takes back.
 */
export function priceTableOf(raw: unknown): unknown {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw) || !Object.hasOwn(raw, 'prices')) return raw;
  const other = Object.keys(raw).find((k) => k !== 'prices' && !READ_ONLY_PRICE_FIELDS.includes(k));
  if (other !== undefined) {
    throw new FieldError('InvalidParameter', other, 'unknown field beside "prices" (a price document is the table, or {"prices": table})');
  }
  return (raw as { prices: unknown }).prices;
}

const KNOWN_ROWS = new Set(Object.entries(MODELS).flatMap(([model, versions]) => Object.keys(versions).map((v) => `${model}:${v}`)));

/**
 * Checks an operator's price table, wherever it comes from (the admin API, the CLI, AIGC_RELAY_PRICES_FILE): every
 * catalogued model version present with every class, each price a non-negative safe integer, and nothing else, so
 * a typo such as "GEM:3" is an error rather than a silently ignored row. Throws a FieldError naming the entry under
 * `field`. `unknownRows: 'ignore'` drops rows the catalogue does not have, for a table saved before a model version
 * was retired (nothing may then stop the relay from reading its own database).
 */
export function parsePriceTable(raw: unknown, options: { field?: string; unknownRows?: 'refuse' | 'ignore' } = {}): PriceTable {
  const field = options.field ?? 'prices';
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new FieldError('InvalidParameterValue', field, 'must be an object like {"GEM:3.0": {"1K": 40, "2K": 60, "4K": 100}, …}');
  }
  if (options.unknownRows !== 'ignore') {
    for (const row of Object.keys(raw)) {
      if (!KNOWN_ROWS.has(row)) throw new FieldError('InvalidParameter', `${field}.${row}`, `not a model version; expected ${[...KNOWN_ROWS].join(', ')}`);
    }
  }
  const table: Record<string, Record<PriceClass, number>> = {};
  for (const key of KNOWN_ROWS) {
    const row = (raw as Record<string, unknown>)[key];
    if (typeof row !== 'object' || row === null || Array.isArray(row)) {
      throw new FieldError('MissingParameter', field, `missing "${key}" (every model version needs a row: ${PRICE_CLASSES.join(', ')})`);
    }
    const extra = Object.keys(row).find((c) => !(PRICE_CLASSES as readonly string[]).includes(c));
    if (extra !== undefined) throw new FieldError('InvalidParameter', `${field}.${key}.${extra}`, `not a resolution class; expected ${PRICE_CLASSES.join(', ')}`);
    const parsed = {} as Record<PriceClass, number>;
    for (const cls of PRICE_CLASSES) {
      const price = (row as Record<string, unknown>)[cls];
      if (typeof price !== 'number' || !Number.isSafeInteger(price) || price < 0) {
        throw new FieldError('InvalidParameterValue', `${field}.${key}.${cls}`, 'must be a whole number of credits ≥ 0');
      }
      parsed[cls] = price;
    }
    table[key] = parsed;
  }
  return table;
}
