/**
 * The model catalogue as the seed page documents it, with Tencent's own limits (shared/reference). Everything that
 * differs by model lives in this one table so validation, pricing and the upstream mapping read the same facts.
 */
export type ModelName = 'GEM' | 'Qwen' | 'Hunyuan';

export interface ModelVersionSpec {
  /** Most input images the upstream accepts for this version. */
  readonly maxImages: number;
  /** `file_infos[].text` (an image description) is only understood by GEM. */
  readonly acceptsImageText: boolean;
  /** `output_config.aspect_ratio` is only supported by GEM. */
  readonly acceptsAspectRatio: boolean;
  /**
   * The sizes the upstream can make, when it cannot make every size the seed lists: a request for more is made at
   * the largest size within these, keeping its shape (output-size.ts), and priced at what is made (pricing.ts).
   */
  readonly sizeLimits?: SizeLimits;
}

export interface SizeLimits {
  readonly minSide: number;
  readonly maxSide: number;
  readonly maxPixels: number;
}

/**
 * Hunyuan 3.0 (shared/reference: AdditionalParameters): each side 512–2048, at most 1024x1024 pixels in all. Qwen's
 * limits are not documented; the same ones are applied.
 */
export const EXT_SIZE_LIMITS: SizeLimits = { minSide: 512, maxSide: 2048, maxPixels: 1024 * 1024 };

const GEM: ModelVersionSpec = { maxImages: 3, acceptsImageText: true, acceptsAspectRatio: true };

/** Each model's versions, oldest first: the last one is what a client that names no version gets (`newestVersion`). */
export const MODELS: Readonly<Record<ModelName, Readonly<Record<string, ModelVersionSpec>>>> = {
  GEM: {
    '2.5': GEM,
    '3.0': { ...GEM, maxImages: 14 },
  },
  Qwen: {
    '0925': { maxImages: 1, acceptsImageText: false, acceptsAspectRatio: false, sizeLimits: EXT_SIZE_LIMITS },
  },
  Hunyuan: {
    '3.0': { maxImages: 3, acceptsImageText: false, acceptsAspectRatio: false, sizeLimits: EXT_SIZE_LIMITS },
  },
};

export const MODEL_NAMES = Object.keys(MODELS) as ModelName[];

/** `GEM:3.0`: a model version as one key (per-model capacity, channel model lists). */
export function modelKey(input: { readonly model_name: string; readonly model_version: string }): string {
  return `${input.model_name}:${input.model_version}`;
}

/** Every model version of the catalogue, as keys. */
export const MODEL_KEYS: readonly string[] = MODEL_NAMES.flatMap((m) => Object.keys(MODELS[m]).map((v) => modelKey({ model_name: m, model_version: v })));

export function newestVersion(model: ModelName): string {
  return Object.keys(MODELS[model]).at(-1)!;
}

export function modelSpec(model: ModelName, version: string): ModelVersionSpec | undefined {
  return MODELS[model][version];
}

export const RESOLUTIONS = [
  '720P', '1080P', '2K', '4K',
  '1024x1024', '2048x2048', '2304x1728', '2496x1664', '2560x1440', '3024x1296',
  '4096x4096', '4694x3520', '4992x3328', '5404x3040', '6198x2656',
] as const;
export type Resolution = (typeof RESOLUTIONS)[number];

export const ASPECT_RATIOS = ['1:1', '3:2', '2:3', '3:4', '4:3', '4:5', '5:4', '9:16', '16:9', '21:9'] as const;
export type AspectRatio = (typeof ASPECT_RATIOS)[number];

export const STORAGE_MODES = ['Permanent', 'Temporary'] as const;
export type StorageMode = (typeof STORAGE_MODES)[number];

export const SWITCHES = ['Enabled', 'Disabled'] as const;
export type Switch = (typeof SWITCHES)[number];

export const PERSON_GENERATION = ['AllowAdult', 'Disallowed'] as const;
export type PersonGeneration = (typeof PERSON_GENERATION)[number];

export const FILE_TYPES = ['File', 'Url'] as const;
export type FileType = (typeof FILE_TYPES)[number];
