import { MODELS, type ModelName } from './models';
import { megapixels, outputSize } from './output-size';
import type { TaskInput } from './task-input';

/**
 * Prices are whole credits (never floats) per model version and resolution class. The class comes from the pixel
 * count the request will produce, so `2K` and `2560x1440` cost the same.
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

export function priceClass(input: TaskInput): PriceClass {
  const mp = megapixels(outputSize(input.output_config.resolution, input.output_config.aspect_ratio));
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

/**
 * Checks an operator's price table: every catalogued model version present, every price a non-negative safe
 * integer. Returns the table or throws an Error naming the offending entry.
 */
export function parsePriceTable(raw: unknown): PriceTable {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new Error('price table must be an object');
  const table: Record<string, Record<PriceClass, number>> = {};
  for (const model of Object.keys(MODELS) as ModelName[]) {
    for (const version of Object.keys(MODELS[model])) {
      const key = `${model}:${version}`;
      const row = (raw as Record<string, unknown>)[key];
      if (typeof row !== 'object' || row === null) throw new Error(`price table: missing "${key}"`);
      const parsed = {} as Record<PriceClass, number>;
      for (const cls of PRICE_CLASSES) {
        const price = (row as Record<string, unknown>)[cls];
        if (typeof price !== 'number' || !Number.isSafeInteger(price) || price < 0) {
          throw new Error(`price table: "${key}".${cls} must be a whole number of credits ≥ 0`);
        }
        parsed[cls] = price;
      }
      table[key] = parsed;
    }
  }
  return table;
}
