import { ASPECT_RATIOS, EXT_SIZE_LIMITS, modelSpec, type ModelName } from '../../domain/models';
import { explicitSize, fitWithin, sizeMatchesRatio, type PixelSize } from '../../domain/output-size';
import { parseExtInfo, withSize } from '../../domain/ext-info';
import { priceClass } from '../../domain/pricing';
import type { InputImageRef, TaskInput } from '../../domain/task-input';
import type { Vod } from './client';

/**
 * The client body (the seed's snake_case, validated into TaskInput) → Tencent's CreateAigcImageTask, declared as
 * data and applied by one function.
 *
 * Model names: the seed's `GEM` is upstream `GG` (versions 2.5 and 3.0 as they are); `Qwen` and `Hunyuan` keep their
 * names. Resolution:
 * - GG takes `OutputConfig.Resolution` ∈ 1K/2K/4K. Classes map by name: 720P and 1080P → 1K (GG's smallest),
 *   2K → 2K, 4K → 4K. An explicit WxH maps by its pixel count with the thresholds of domain/pricing.ts: up to
 *   2.1 MP → 1K (1024x1024), up to 4.2 MP → 2K (2048x2048, 2560x1440, …), larger → 4K (4096x4096, …); it also
 *   sends the aspect ratio it has when none was given (2560x1440 → 16:9).
 * - Hunyuan and Qwen take no Resolution; the size goes in `ExtInfo` as `{"AdditionalParameters":"{\"size\":\"WxH\"}"}`.
 *   The size is the one the task is made at (domain/output-size.ts `producedSize`): the requested size scaled
 *   into the model's limits (domain/models.ts), which is also what it is priced at.
 * - No resolution given: nothing is sent and Tencent's default applies.
 *
 * `SessionId` is our task id (with a round after a failure: session.ts): Tencent refuses a repeated SessionId for
 * days, so a resubmission after a crash or a lost answer cannot create a second upstream task. The client's own
 * `session_id` is the relay's de-duplication and is not forwarded.
 */
export interface ModelMapping {
  readonly name: string;
  readonly versions: Readonly<Record<string, string>>;
  readonly resolution: 'class' | 'ext-size';
}

export const UPSTREAM_MODELS: Readonly<Record<ModelName, ModelMapping>> = {
  GEM: { name: 'GG', versions: { '2.5': '2.5', '3.0': '3.0' }, resolution: 'class' },
  Qwen: { name: 'Qwen', versions: { '0925': '0925' }, resolution: 'ext-size' },
  Hunyuan: { name: 'Hunyuan', versions: { '3.0': '3.0' }, resolution: 'ext-size' },
};

/** Field rules: target field ← value from the input (undefined = not sent). */
type Rules<T> = ReadonlyArray<readonly [keyof T, (input: TaskInput) => string | number | undefined]>;

const TOP_LEVEL: Rules<Vod.CreateAigcImageTaskRequest> = [
  ['Prompt', (i) => i.prompt],
  ['NegativePrompt', (i) => i.negative_prompt],
  ['EnhancePrompt', (i) => i.enhance_prompt],
  ['SessionContext', (i) => i.session_context],
  ['TasksPriority', (i) => (i.tasks_priority === 0 ? undefined : i.tasks_priority)],
];

const OUTPUT_CONFIG: Rules<Vod.AigcImageOutputConfig> = [
  // Always Temporary upstream: the relay downloads every image and keeps its own copy, for as long as the client's
  // storage_mode says (app/outputs.ts). A Permanent copy in the operator's VOD app would be storage that nothing
  // reads and nothing deletes, not even the client's DELETE of the file.
  ['StorageMode', () => 'Temporary'],
  ['AspectRatio', (i) => i.output_config.aspect_ratio ?? ratioOfExplicitSize(i)],
  ['PersonGeneration', (i) => i.output_config.person_generation],
  ['InputComplianceCheck', (i) => i.output_config.input_compliance_check],
  ['OutputComplianceCheck', (i) => i.output_config.output_compliance_check],
];

function apply<T>(rules: Rules<T>, input: TaskInput, target: Partial<Record<keyof T, unknown>>): void {
  for (const [field, read] of rules) {
    const value = read(input);
    if (value !== undefined) target[field] = value;
  }
}

function ratioOfExplicitSize(input: TaskInput): string | undefined {
  if (input.model_name !== 'GEM' || !input.output_config.resolution) return undefined;
  const size = explicitSize(input.output_config.resolution);
  return size ? ASPECT_RATIOS.find((r) => sizeMatchesRatio(size, r)) : undefined;
}

/**
 * Adds `size` to the client's ExtInfo. Validation (domain/validate-submit) has made sure an ExtInfo given with a
 * resolution can carry it and names no size of its own; one that names a size without a resolution is kept as is.
 */
export function extInfoWithSize(extInfo: string | undefined, size: PixelSize): string | undefined {
  const parts = parseExtInfo(extInfo);
  if (!parts || 'size' in parts.additional) return extInfo;
  return withSize(parts, size);
}

/** GG's resolution is the class the request is priced at (domain/pricing.ts), so what is charged is what is asked for. */
function ggResolution(input: TaskInput): string {
  return priceClass(input);
}

export interface MappingContext {
  /** This submission's SessionId (session.ts: the task id, or the task id and a round). */
  readonly sessionId: string;
  readonly subAppId: number;
  /** The size the client asked for (domain/output-size). */
  readonly size: PixelSize;
  /** A link the upstream can fetch for one of our own files. */
  readonly linkFor: (fileId: string) => string;
}

/** Digit-only ids are Tencent VOD FileIds (ours look like `file_…`): passed through as `File`. */
export const isVodFileId = (id: string): boolean => /^\d+$/.test(id);

function fileInfo(ref: InputImageRef, ctx: MappingContext): Vod.AigcImageTaskInputFileInfo {
  const text = ref.text !== undefined ? { Text: ref.text } : {};
  if (ref.type === 'Url') return { Type: 'Url', Url: ref.url!, ...text };
  const id = ref.file_id!;
  return isVodFileId(id) ? { Type: 'File', FileId: id, ...text } : { Type: 'Url', Url: ctx.linkFor(id), ...text };
}

export function toCreateRequest(input: TaskInput, ctx: MappingContext): Vod.CreateAigcImageTaskRequest {
  const model = UPSTREAM_MODELS[input.model_name];
  const version = model.versions[input.model_version];
  if (!version) throw new Error(`no upstream mapping for ${input.model_name} ${input.model_version}`);

  const request: Partial<Record<keyof Vod.CreateAigcImageTaskRequest, unknown>> = {
    SubAppId: ctx.subAppId,
    ModelName: model.name,
    ModelVersion: version,
    SessionId: ctx.sessionId,
  };
  apply(TOP_LEVEL, input, request);
  if (input.file_infos.length > 0) request.FileInfos = input.file_infos.map((ref) => fileInfo(ref, ctx));

  const output: Partial<Record<keyof Vod.AigcImageOutputConfig, unknown>> = {};
  apply(OUTPUT_CONFIG, input, output);
  let extInfo = input.ext_info;
  if (input.output_config.resolution) {
    if (model.resolution === 'class') output.Resolution = ggResolution(input);
    else extInfo = extInfoWithSize(extInfo, fitWithin(ctx.size, modelSpec(input.model_name, input.model_version)?.sizeLimits ?? EXT_SIZE_LIMITS));
  }
  if (Object.keys(output).length > 0) request.OutputConfig = output;
  if (extInfo !== undefined) request.ExtInfo = extInfo;
  return request as unknown as Vod.CreateAigcImageTaskRequest;
}
