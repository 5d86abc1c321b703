import { FieldError } from './errors';
import {
  ASPECT_RATIOS, FILE_TYPES, MODELS, MODEL_NAMES, PERSON_GENERATION, RESOLUTIONS, STORAGE_MODES, SWITCHES,
  type ModelName, type ModelVersionSpec, type SizeLimits,
} from './models';
import { additionalParametersProblem, extSizeProblem, parseExtInfo, repeatedJsonKey } from './ext-info';
import { explicitSize, sizeMatchesRatio } from './output-size';
import {
  FILE_ID_PATTERN, FileInfoSchema, LIMITS, OutputConfigSchema, CanonicalSubmitSchema,
} from './submit-schema';
import type { InputImageRef, OutputConfig, TaskInput } from './task-input';

/**
 * Turns a parsed JSON submit body into a `TaskInput`, or throws a `FieldError` for the FIRST problem found.
 *
 * Checks run in a fixed order: body shape, unknown fields, then the fields in schema order (model first, since
 * several rules depend on it). Codes: MissingParameter (a required field is absent), InvalidParameter (wrong JSON
 * type, unknown field, body not an object), InvalidParameterValue (right type, bad value).
 *
 * Policies a reader should know:
 * - `""` in an optional field means absent: the contract says so of every optional field, so of `output_config`
 *   and `file_infos` too, though they are not strings. `null` is treated the same way: generated clients
 *   (openapi-generator, pydantic without exclude_none, …) commonly send `null` for unset optional fields, and
 *   refusing them buys nothing. For a required field, `null` and `""` are reported as MissingParameter. `null`
 *   where an object is required (the body itself, an item of file_infos) is InvalidParameter.
 * - Enum values match case-insensitively; the result holds the canonical spelling. Nothing is trimmed.
 * - Lengths are counted in UTF-16 code units (`String.length`), which is never more lenient than counting
 *   characters, so Tencent's "50 characters" limits still hold upstream.
 * - `url` is stored as `new URL(url).href` (normalized; what a fetcher would use anyway).
 * - `tasks_priority`: a JSON integer, or a string of optional sign and digits; -0 becomes 0. Default 0.
 * - Messages echo at most ~60 characters of a bad value (then `…`); keys are echoed the same way.
 * - The result is built from scratch with known keys only, so nothing from the input (like `__proto__`) leaks.
 */
export function validateSubmitBody(raw: unknown): TaskInput {
  // No body at all (none sent, or an empty one whatever its Content-Type; Fastify hands that over as null, as it
  // does the JSON text `null`): say so.
  if (raw === undefined || raw === null) throw new FieldError('MissingParameter', 'body', 'empty or null; send a JSON object');
  const body = readObject('body', raw);
  checkKeys('', body, BODY_KEYS);

  const model_name = matchEnum('model_name', requiredString('model_name', get(body, 'model_name')), MODEL_NAME_ENUM);
  const model_version = requiredString('model_version', get(body, 'model_version'));
  const spec = MODELS[model_name][model_version];
  if (!Object.hasOwn(MODELS[model_name], model_version) || spec === undefined) {
    const versions = Object.keys(MODELS[model_name]).join(', ');
    throw bad('model_version', `${show(model_version)} is not one of ${versions} (the versions of ${model_name})`);
  }

  const prompt = optionalString('prompt', get(body, 'prompt'), LIMITS.prompt);
  const file_infos = readFileInfos(get(body, 'file_infos'), model_name, model_version, spec);
  if (file_infos.length === 0) {
    if (prompt === undefined) {
      throw new FieldError('MissingParameter', 'prompt', 'is required when file_infos is empty or absent');
    }
    if (prompt.trim() === '') throw bad('prompt', 'must not be blank when file_infos is empty or absent');
  }

  const negative_prompt = optionalString('negative_prompt', get(body, 'negative_prompt'), LIMITS.negativePrompt);
  const enhance_prompt = optionalEnum('enhance_prompt', get(body, 'enhance_prompt'), SWITCH_ENUM);
  const output_config = readOutputConfig(get(body, 'output_config'), model_name, spec);
  const session_id = optionalString('session_id', get(body, 'session_id'), LIMITS.sessionId);
  const session_context = optionalString('session_context', get(body, 'session_context'), LIMITS.sessionContext);
  const tasks_priority = readPriority(get(body, 'tasks_priority'));
  const ext_info = optionalString('ext_info', get(body, 'ext_info'), LIMITS.extInfo);
  if (spec.sizeLimits) checkExtInfoSize(ext_info, output_config.resolution !== undefined, `${model_name} ${model_version}`, spec.sizeLimits);

  // A fresh object in schema order; optional keys only when present.
  return {
    model_name,
    model_version,
    ...(prompt === undefined ? {} : { prompt }),
    file_infos,
    ...(negative_prompt === undefined ? {} : { negative_prompt }),
    ...(enhance_prompt === undefined ? {} : { enhance_prompt }),
    output_config,
    ...(session_id === undefined ? {} : { session_id }),
    ...(session_context === undefined ? {} : { session_context }),
    tasks_priority,
    ...(ext_info === undefined ? {} : { ext_info }),
  };
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };
type Json = Record<string, unknown>;

// The allowed keys come from the documented schema, so the docs and the unknown-field rule cannot drift apart.
const BODY_KEYS = new Set(Object.keys(CanonicalSubmitSchema.properties));
const FILE_INFO_KEYS = new Set(Object.keys(FileInfoSchema.properties));
const OUTPUT_KEYS = new Set(Object.keys(OutputConfigSchema.properties));

const FILE_ID_RE = new RegExp(FILE_ID_PATTERN);
const INTEGER_STRING_RE = /^[+-]?[0-9]+$/;
const MAX_ECHO = 60;

const IMAGE_TEXT_MODELS = modelsWhere((s) => s.acceptsImageText);
const ASPECT_RATIO_MODELS = modelsWhere((s) => s.acceptsAspectRatio);

function modelsWhere(test: (spec: ModelVersionSpec) => boolean): string {
  return MODEL_NAMES.filter((m) => Object.values(MODELS[m]).some(test)).join(', ');
}

// ---------------------------------------------------------------------------------------------------------------
// Nested objects

function readFileInfos(value: unknown, model: ModelName, version: string, spec: ModelVersionSpec): InputImageRef[] {
  if (isAbsent(value) || value === '') return [];
  if (!Array.isArray(value)) throw wrongType('file_infos', 'an array', value);
  if (value.length > spec.maxImages) {
    const plural = spec.maxImages === 1 ? 'image' : 'images';
    throw bad('file_infos', `at most ${spec.maxImages} ${plural} for ${model} ${version}, got ${value.length}`);
  }
  const refs: InputImageRef[] = [];
  for (let i = 0; i < value.length; i++) refs.push(readFileInfo(`file_infos[${i}]`, value[i], model, spec));
  return refs;
}

function readFileInfo(path: string, value: unknown, model: ModelName, spec: ModelVersionSpec): InputImageRef {
  const item = readObject(path, value);
  checkKeys(path, item, FILE_INFO_KEYS);
  const givenType = optionalString(`${path}.type`, get(item, 'type'));
  const fileId = optionalString(`${path}.file_id`, get(item, 'file_id'));
  const url = optionalString(`${path}.url`, get(item, 'url'));
  const text = optionalString(`${path}.text`, get(item, 'text'), LIMITS.imageText);
  const type = givenType !== undefined ? matchEnum(`${path}.type`, givenType, FILE_TYPE_ENUM) : impliedType(path, fileId, url);

  const ref: Mutable<InputImageRef> = { type };
  if (type === 'File') {
    if (url !== undefined) throw bad(`${path}.url`, 'not allowed when type is File (give file_id)');
    if (fileId === undefined) throw new FieldError('MissingParameter', `${path}.file_id`, 'is required when type is File');
    ref.file_id = checkFileId(`${path}.file_id`, fileId);
  } else {
    if (fileId !== undefined) throw bad(`${path}.file_id`, 'not allowed when type is Url (give url)');
    if (url === undefined) throw new FieldError('MissingParameter', `${path}.url`, 'is required when type is Url');
    ref.url = checkUrl(`${path}.url`, url);
  }
  if (text !== undefined) {
    if (!spec.acceptsImageText) throw bad(`${path}.text`, `only supported by ${IMAGE_TEXT_MODELS}, not ${model}`);
    ref.text = text;
  }
  return ref;
}

/**
 * `type` is optional on the seed page (and in Tencent's FileInfo): without it, the one of `file_id` and `url` that is
 * given says which it is. Both or neither cannot be read either way.
 */
function impliedType(path: string, fileId: string | undefined, url: string | undefined): (typeof FILE_TYPES)[number] {
  if (fileId !== undefined && url === undefined) return 'File';
  if (url !== undefined && fileId === undefined) return 'Url';
  if (fileId !== undefined) throw bad(`${path}.type`, 'is required when both file_id and url are given (File or Url)');
  throw new FieldError('MissingParameter', `${path}.file_id`, 'or url is required (with type File or Url)');
}

function checkFileId(path: string, id: string): string {
  if (id.length > LIMITS.fileId) throw bad(path, `longer than ${LIMITS.fileId} characters`);
  if (!FILE_ID_RE.test(id)) throw bad(path, `${show(id)} contains whitespace or control characters`);
  return id;
}

function checkUrl(path: string, text: string): string {
  if (text.length > LIMITS.url) throw bad(path, `longer than ${LIMITS.url} characters`);
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw bad(path, `${show(text)} is not an absolute URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw bad(path, `${show(text)} is not an http or https URL`);
  if (url.href.length > LIMITS.url) throw bad(path, `longer than ${LIMITS.url} characters once normalized`);
  return url.href;
}

function readOutputConfig(value: unknown, model: ModelName, spec: ModelVersionSpec): OutputConfig {
  const out: Mutable<OutputConfig> = { storage_mode: 'Temporary' };
  if (isAbsent(value) || value === '') return out;
  const p = 'output_config';
  const config = readObject(p, value);
  checkKeys(p, config, OUTPUT_KEYS);

  out.storage_mode = optionalEnum(`${p}.storage_mode`, get(config, 'storage_mode'), STORAGE_MODE_ENUM) ?? 'Temporary';
  const resolution = optionalEnum(`${p}.resolution`, get(config, 'resolution'), RESOLUTION_ENUM);
  put(out, 'resolution', resolution);

  const ratioText = optionalString(`${p}.aspect_ratio`, get(config, 'aspect_ratio'));
  if (ratioText !== undefined) {
    if (!spec.acceptsAspectRatio) throw bad(`${p}.aspect_ratio`, `not supported by ${model} (only by ${ASPECT_RATIO_MODELS})`);
    const ratio = matchEnum(`${p}.aspect_ratio`, ratioText, ASPECT_RATIO_ENUM);
    const size = resolution === undefined ? undefined : explicitSize(resolution);
    if (size && !sizeMatchesRatio(size, ratio)) {
      const fits = ASPECT_RATIOS.filter((r) => sizeMatchesRatio(size, r));
      const hint = fits.length > 0 ? ` (which is ${fits.join(' or ')}); give a matching ratio or omit it` : '';
      throw bad(`${p}.aspect_ratio`, `${show(ratio)} does not match resolution ${resolution}${hint}`);
    }
    out.aspect_ratio = ratio;
  }

  put(out, 'person_generation', optionalEnum(`${p}.person_generation`, get(config, 'person_generation'), PERSON_GENERATION_ENUM));
  put(out, 'input_compliance_check', optionalEnum(`${p}.input_compliance_check`, get(config, 'input_compliance_check'), SWITCH_ENUM));
  put(out, 'output_compliance_check', optionalEnum(`${p}.output_compliance_check`, get(config, 'output_compliance_check'), SWITCH_ENUM));
  return out;
}

/**
 * For models whose size travels in `ext_info` (models.ts `sizeLimits`): a size named there must be one the model can
 * make, and a resolution needs an `ext_info` it can be written into. Otherwise the task would be charged and then
 * refused upstream, or made at the upstream's default size instead of the one asked for.
 */
function checkExtInfoSize(extInfo: string | undefined, hasResolution: boolean, model: string, limits: SizeLimits): void {
  // An AdditionalParameters in another form than Tencent's names a size nothing checks, and the task would be
  // charged, then refused upstream or made at the default size: refused whether or not a resolution is given.
  const unreadable = additionalParametersProblem(extInfo);
  if (unreadable) throw bad('ext_info', `${unreadable} (${model} reads its size there)`);
  const parts = parseExtInfo(extInfo);
  if (!parts) {
    if (hasResolution) {
      throw bad('ext_info', `with output_config.resolution, ${model} needs ext_info to be a JSON object (its AdditionalParameters, if any, a JSON object in a string): the size is sent in it`);
    }
    return;
  }
  // Forwarded as given, so it must read the same to any parser: no key twice, none that is a known one in another case.
  const additionalText = parts.outer.AdditionalParameters;
  const repeated = extInfo === undefined ? undefined : (repeatedJsonKey(extInfo) ?? (typeof additionalText === 'string' ? repeatedJsonKey(additionalText) : undefined));
  if (repeated !== undefined) throw bad('ext_info', `the key ${JSON.stringify(repeated)} is given twice (keys are compared without case); give it once`);
  const misspelt = [...Object.keys(parts.outer), ...Object.keys(parts.additional)].find((k) => ['additionalparameters', 'size'].includes(k.toLowerCase()) && k !== 'AdditionalParameters' && k !== 'size');
  if (misspelt !== undefined) throw bad('ext_info', `${JSON.stringify(misspelt)}: write it ${misspelt.toLowerCase() === 'size' ? 'size' : 'AdditionalParameters'}, as Tencent does (${model} reads its size there)`);
  if (!('size' in parts.additional)) return;
  const problem = extSizeProblem(parts.additional.size, limits);
  if (problem) throw bad('ext_info', `${problem} for ${model}`);
  if (hasResolution) throw bad('ext_info', 'names a size and output_config.resolution is given too; give one of them');
}

function readPriority(value: unknown): number {
  const path = 'tasks_priority';
  if (isAbsent(value) || value === '') return 0;
  let n: number;
  if (typeof value === 'number') {
    // JSON numbers past 1.8e308 parse as ±Infinity: "Infinity is not an integer" would name nothing the client sent.
    if (!Number.isFinite(value)) throw bad(path, `a number that large is out of range ${LIMITS.minPriority}…${LIMITS.maxPriority}`);
    if (!Number.isInteger(value)) throw bad(path, `${String(value)} is not an integer`);
    n = value;
  } else if (typeof value === 'string') {
    if (!INTEGER_STRING_RE.test(value)) throw bad(path, `${show(value)} is not an integer`);
    n = Number(value);
  } else {
    throw wrongType(path, 'an integer or a numeric string', value);
  }
  if (n < LIMITS.minPriority || n > LIMITS.maxPriority) {
    const shown = typeof value === 'string' ? show(value) : String(value);
    throw bad(path, `${shown} is out of range ${LIMITS.minPriority}…${LIMITS.maxPriority}`);
  }
  return n === 0 ? 0 : n; // folds -0
}

// ---------------------------------------------------------------------------------------------------------------
// Generic field readers

function isAbsent(value: unknown): value is undefined | null {
  return value === undefined || value === null;
}

function get(obj: Json, key: string): unknown {
  return Object.hasOwn(obj, key) ? obj[key] : undefined;
}

function readObject(path: string, value: unknown): Json {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw wrongType(path, path === 'body' ? 'a JSON object' : 'an object', value);
  }
  const proto: unknown = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) throw wrongType(path, 'a plain JSON object', value);
  return value as Json;
}

/** Rejects the first key not in `allowed`; suggests the right spelling for near misses like `ModelName`. */
function checkKeys(parent: string, obj: Json, allowed: ReadonlySet<string>): void {
  for (const key of Object.keys(obj)) {
    if (allowed.has(key)) continue;
    const squashed = squash(key);
    const hint = [...allowed].find((a) => squash(a) === squashed);
    throw new FieldError('InvalidParameter', childPath(parent, key), hint ? `unknown field (did you mean ${hint}?)` : 'unknown field');
  }
}

const squash = (key: string): string => key.toLowerCase().replace(/[-_\s]/g, '');

/** How an error names the key `key` of `parent` ('' for the top level): as written when plain, else quoted and cut. */
export function childPath(parent: string, key: string): string {
  if (/^[A-Za-z0-9_]{1,60}$/.test(key)) return parent === '' ? key : `${parent}.${key}`;
  return `${parent}[${show(key)}]`;
}

/** A string, or undefined for absent / null / "". */
function optionalString(path: string, value: unknown, maxLength?: number): string | undefined {
  if (isAbsent(value) || value === '') return undefined;
  if (typeof value !== 'string') throw wrongType(path, 'a string', value);
  if (maxLength !== undefined && value.length > maxLength) {
    // The count is UTF-16 units (see the header); say so when it differs from what the client sees as characters.
    const units = /[\uD800-\uDFFF]/.test(value) ? ' UTF-16 units: emoji and other characters beyond U+FFFF count as two' : '';
    throw bad(path, `longer than ${maxLength} characters (got ${value.length}${units})`);
  }
  return value;
}

function requiredString(path: string, value: unknown): string {
  const text = optionalString(path, value);
  if (text === undefined) throw new FieldError('MissingParameter', path, 'is required');
  return text;
}

/**
 * An enum's values by spelling, built once per enum: each value under itself and under its ASCII-lowercased
 * spelling, so a value sent as documented is found without lowercasing it, and any other case by one lowercasing.
 * Where two values lowercase alike the first wins, as a scan in order would pick it (no enum here has two).
 */
interface EnumIndex<T extends string> {
  readonly bySpelling: ReadonlyMap<string, T>;
  /** The values for the refusal message, in order. */
  readonly list: string;
}

function enumIndex<T extends string>(values: readonly T[]): EnumIndex<T> {
  const bySpelling = new Map<string, T>();
  for (const value of values) {
    const lower = asciiLower(value);
    if (!bySpelling.has(lower)) bySpelling.set(lower, value);
  }
  // Exact spellings after: a value that is not all lowercase has A-Z in it, so it cannot be one of the lowercased keys.
  for (const value of values) if (bySpelling.get(asciiLower(value)) === value) bySpelling.set(value, value);
  return { bySpelling, list: values.join(', ') };
}

function matchEnum<T extends string>(path: string, value: string, allowed: EnumIndex<T>): T {
  // ASCII letters only: String#toLowerCase would also fold the Kelvin sign (U+212A) into "k" and take "2\u212A".
  const found = allowed.bySpelling.get(value) ?? allowed.bySpelling.get(asciiLower(value));
  if (found === undefined) throw bad(path, `${show(value)} is not one of ${allowed.list}`);
  return found;
}

const asciiLower = (text: string): string => text.replace(ASCII_UPPER_RE, lowerAsciiLetter);
const ASCII_UPPER_RE = /[A-Z]/g;
const lowerAsciiLetter = (c: string): string => String.fromCharCode(c.charCodeAt(0) + 32);

const MODEL_NAME_ENUM = enumIndex(MODEL_NAMES);
const FILE_TYPE_ENUM = enumIndex(FILE_TYPES);
const STORAGE_MODE_ENUM = enumIndex(STORAGE_MODES);
const RESOLUTION_ENUM = enumIndex(RESOLUTIONS);
const ASPECT_RATIO_ENUM = enumIndex(ASPECT_RATIOS);
const PERSON_GENERATION_ENUM = enumIndex(PERSON_GENERATION);
const SWITCH_ENUM = enumIndex(SWITCHES);

function optionalEnum<T extends string>(path: string, value: unknown, allowed: EnumIndex<T>): T | undefined {
  const text = optionalString(path, value);
  return text === undefined ? undefined : matchEnum(path, text, allowed);
}

function put<T extends object, K extends keyof T>(target: T, key: K, value: T[K] | undefined): void {
  if (value !== undefined) target[key] = value;
}

// ---------------------------------------------------------------------------------------------------------------
// Errors

function bad(path: string, reason: string): FieldError {
  return new FieldError('InvalidParameterValue', path, reason);
}

function wrongType(path: string, expected: string, value: unknown): FieldError {
  return new FieldError('InvalidParameter', path, `expected ${expected}, got ${typeName(value)}`);
}

function typeName(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  const t = typeof value;
  return t === 'object' ? 'an object' : t === 'undefined' ? 'nothing' : t;
}

/** A string as JSON, cut after ~MAX_ECHO characters of its escaped form (never in the middle of an escape). */
function show(value: string): string {
  let out = '';
  for (const ch of value) {
    const piece = JSON.stringify(ch).slice(1, -1);
    if (out.length + piece.length > MAX_ECHO) return `"${out}…"`;
    out += piece;
  }
  return `"${out}"`;
}
