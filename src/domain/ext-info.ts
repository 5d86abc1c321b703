import type { PixelSize } from './output-size';
import type { SizeLimits } from './models';

/**
 * `ext_info` is Tencent's "reserved field": a string passed upstream as is. For Hunyuan (and Qwen) it is also where
 * a size travels, as `{"AdditionalParameters": "{\"size\":\"728x1024\"}"}` (shared/reference: ExtInfo) — JSON in a
 * string in JSON. Validation and the upstream mapping read it through this one parser so they agree on it.
 */
export interface ExtInfoParts {
  /** The outer object, without `AdditionalParameters`' parsed form. */
  readonly outer: Readonly<Record<string, unknown>>;
  /** `AdditionalParameters` parsed (an empty object when absent). */
  readonly additional: Readonly<Record<string, unknown>>;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/**
 * The parts of an `ext_info` that can carry a size, or undefined when it cannot: not a JSON object, or an
 * `AdditionalParameters` that is not a string holding a JSON object. An absent `ext_info` is an empty object.
 */
export function parseExtInfo(extInfo: string | undefined): ExtInfoParts | undefined {
  if (extInfo === undefined) return { outer: {}, additional: {} };
  const outer = parseJson(extInfo);
  if (!isObject(outer)) return undefined;
  if (outer.AdditionalParameters === undefined) return { outer, additional: {} };
  if (typeof outer.AdditionalParameters !== 'string') return undefined;
  const additional = parseJson(outer.AdditionalParameters);
  return isObject(additional) ? { outer, additional } : undefined;
}

/**
 * Why an `ext_info` that is a JSON object carries an `AdditionalParameters` nobody can read a size from (an object,
 * or a string that is no JSON object: Tencent's form is a JSON object in a string), or undefined when it does not.
 */
export function additionalParametersProblem(extInfo: string | undefined): string | undefined {
  if (extInfo === undefined) return undefined;
  const outer = parseJson(extInfo);
  if (!isObject(outer) || outer.AdditionalParameters === undefined) return undefined;
  const additional = outer.AdditionalParameters;
  if (typeof additional === 'string' && isObject(parseJson(additional))) return undefined;
  const got = typeof additional === 'string' ? 'a string that is not a JSON object' : Array.isArray(additional) ? 'an array' : additional === null ? 'null' : typeof additional === 'object' ? 'an object' : typeof additional;
  return `AdditionalParameters must be a JSON object in a string, as in {"AdditionalParameters": "{\\"size\\":\\"728x1024\\"}"}; got ${got}`;
}

/**
 * The first key that an object in `text` (a JSON document JSON.parse has read) holds twice, compared without case, or
 * undefined. JSON.parse keeps the last of two equal keys, another parser may keep the first, and a case-insensitive
 * one (Go's encoding/json) reads `SIZE` as `size`: a size checked here could then reach Tencent as another.
 */
export function repeatedJsonKey(text: string): string | undefined {
  // A set of the keys so far for each open object, null for each open array.
  const open: Array<Set<string> | null> = [];
  let expectingKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      let end = i + 1;
      while (text[end] !== '"') end += text[end] === '\\' ? 2 : 1;
      const keys = open.at(-1);
      if (expectingKey && keys) {
        const key = JSON.parse(text.slice(i, end + 1)) as string; // escapes read as JSON.parse reads them
        if (keys.has(key.toLowerCase())) return key;
        keys.add(key.toLowerCase());
        expectingKey = false;
      }
      i = end;
    } else if (c === '{') {
      open.push(new Set());
      expectingKey = true;
    } else if (c === '[') {
      open.push(null);
      expectingKey = false;
    } else if (c === '}' || c === ']') {
      open.pop();
      expectingKey = false;
    } else if (c === ',') {
      expectingKey = open.at(-1) instanceof Set;
    }
  }
  return undefined;
}

/** `ext_info` with `size` set in its AdditionalParameters; `parts` from parseExtInfo. */
export function withSize(parts: ExtInfoParts, size: PixelSize): string {
  return JSON.stringify({ ...parts.outer, AdditionalParameters: JSON.stringify({ ...parts.additional, size: `${size.width}x${size.height}` }) });
}

/** The size `ext_info` names in its AdditionalParameters (`WIDTHxHEIGHT`), or undefined when it names none. */
export function extInfoSize(extInfo: string | undefined): PixelSize | undefined {
  const size = parseExtInfo(extInfo)?.additional.size;
  const match = typeof size === 'string' ? /^(\d{1,5})x(\d{1,5})$/.exec(size) : null;
  return match ? { width: Number(match[1]), height: Number(match[2]) } : undefined;
}

/** Why a size named in AdditionalParameters is not one the model can make, or undefined when it is. */
export function extSizeProblem(size: unknown, limits: SizeLimits): string | undefined {
  const match = typeof size === 'string' ? /^(\d{1,5})x(\d{1,5})$/.exec(size) : null;
  const rule = `each side ${limits.minSide}–${limits.maxSide}, at most ${limits.maxPixels} pixels in all`;
  if (!match) return `AdditionalParameters.size ${JSON.stringify(size)} is not WIDTHxHEIGHT (${rule})`;
  const width = Number(match[1]);
  const height = Number(match[2]);
  const sideOk = (n: number) => n >= limits.minSide && n <= limits.maxSide;
  if (!sideOk(width) || !sideOk(height) || width * height > limits.maxPixels) {
    return `AdditionalParameters.size ${size as string} is outside the model's sizes (${rule})`;
  }
  return undefined;
}
