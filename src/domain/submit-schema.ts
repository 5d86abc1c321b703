import { Type, type SchemaOptions, type TLiteral, type TSchema } from '@sinclair/typebox';
import {
  ASPECT_RATIOS, FILE_TYPES, MODELS, MODEL_NAMES, PERSON_GENERATION, RESOLUTIONS, STORAGE_MODES, SWITCHES,
} from './models';

/**
 * The shape of `POST /tencent-vod/v1/aigc-image`, in two forms built from one description:
 *
 * - `SubmitRequestSchema`, what a client may send, published in the OpenAPI document: every body the validator
 *   accepts satisfies it (a property test holds them together), so a client that checks its bodies against the
 *   published schema refuses none that the relay would take. It is the canonical form plus the leniencies the
 *   contract grants: enum values in any letter case, `""` and `null` for an absent optional field.
 * - `CanonicalSubmitSchema`, what validation returns and the relay stores and echoes: canonical spellings, nothing
 *   empty, `url` normalized.
 *
 * Requests themselves are checked by `validateSubmitBody` (validate-submit.ts), which is stricter where JSON Schema
 * cannot say it (model-dependent rules, URLs as the WHATWG parser reads them, lengths in UTF-16 units) and names
 * the field in every message; Ajv is not run on the body (it would be the same work twice, with worse messages).
 */

/** Limits that are ours (the contract and Tencent name none); exported so messages and docs agree. */
export const LIMITS = {
  prompt: 10_000,
  negativePrompt: 10_000,
  imageText: 1_000,
  extInfo: 10_000,
  fileId: 128,
  url: 2_048,
  sessionId: 50,
  sessionContext: 1_000,
  minPriority: -10,
  maxPriority: 10,
} as const;

/** No whitespace, no C0/C1 control characters (written without the `u` flag so every JSON-Schema engine reads it). */
export const FILE_ID_PATTERN = '^[^\\s\\x00-\\x1f\\x7f-\\x9f]+$';
/** Stored URLs are `new URL(...).href`, so the scheme is lower-case. */
export const URL_PATTERN = '^https?://';
/** A numeric string in −10…10 (leading sign and zeros allowed). */
export const PRIORITY_STRING_PATTERN = '^[+-]?0*(?:[0-9]|10)$';

const MAX_IMAGES = Math.max(...Object.values(MODELS).flatMap((versions) => Object.values(versions).map((s) => s.maxImages)));

const CASE_NOTE = 'Matched case-insensitively; the canonical spelling is stored and returned.';
const EMPTY_NOTE = 'An empty string (or null) means the field is absent.';


const versionsText = MODEL_NAMES.map((m) => `${m} → ${Object.keys(MODELS[m]).join(' or ')}`).join('; ');
const imagesText = MODEL_NAMES.flatMap((m) =>
  Object.entries(MODELS[m]).map(([v, s]) => `${m} ${v}: ${s.maxImages}`),
).join(', ');
/** `[Gg][Ee][Mm]`: the value in any ASCII letter case (validate-submit matches enums the same way). */
function anyCase(value: string): string {
  return value.replace(/[.*+?^${}()|[\]\\]/g, '\\$&').replace(/[A-Za-z]/g, (c) => `[${c.toUpperCase()}${c.toLowerCase()}]`);
}

/** The metadata a field's documentation shows; hoisted onto a union that wraps the field. */
function hoisted(schema: TSchema): [TSchema, SchemaOptions] {
  const { description, examples, default: byDefault, ...rest } = schema;
  const options = Object.fromEntries(Object.entries({ description, examples, default: byDefault }).filter(([, v]) => v !== undefined));
  return [rest as TSchema, options];
}

function schemas(form: 'request' | 'canonical') {
  const request = form === 'request';
  /** A closed set of strings: `anyOf` of `const`s (Swagger UI lists them); in a request also any letter case. */
  const Enum = <const T extends readonly string[]>(values: T, options: SchemaOptions) =>
    Type.Union(
      [
        ...(values.map((v) => Type.Literal(v)) as TLiteral<T[number]>[]),
        ...(request ? [Type.String({ pattern: `^(?:${values.map(anyCase).join('|')})$`, description: 'Any letter case.' })] : []),
      ],
      options,
    );
  /** An optional field; in a request `""` and `null` say "absent" too. */
  const Optional = (schema: TSchema) => {
    if (!request) return Type.Optional(schema);
    const [inner, options] = hoisted(schema);
    return Type.Optional(Type.Union([inner, Type.Literal(''), Type.Null()], options));
  };
  /** A URL: the canonical form is `new URL(...).href`; a request may send anything that parser reads as http(s). */
  const urlPattern = request ? {} : { pattern: URL_PATTERN };

  const switchField = (what: string, example: string) =>
    Optional(Enum(SWITCHES, { description: `${what}. ${CASE_NOTE} ${EMPTY_NOTE}`, examples: [example] }));

  const FileInfo = Type.Object(
    {
      type: Optional(Enum(FILE_TYPES, {
        description: `Where the input image comes from: File (a file_id from POST /tencent-vod/v1/files, or a Tencent VOD FileId) or Url (an http(s) URL). ${CASE_NOTE} Optional: without it, whichever of file_id and url is given decides (required when both are).`,
        examples: ['File'],
      })),
      file_id: Optional(Type.String({
        description: `Required when type is File; must be absent or empty when type is Url. At most ${LIMITS.fileId} characters, no whitespace or control characters.`,
        maxLength: LIMITS.fileId,
        pattern: FILE_ID_PATTERN,
        examples: ['387702299774574677'],
      })),
      url: Optional(Type.String({
        description: `Required when type is Url; must be absent or empty when type is File. An absolute http:// or https:// URL, at most ${LIMITS.url} characters; stored in normalized form. Recommended: jpeg/png/webp under 7 MB.`,
        maxLength: LIMITS.url,
        ...urlPattern,
        examples: ['https://example.com/1.png'],
      })),
      text: Optional(Type.String({
        description: `A description of this image that helps the model understand it. Only for model GEM. At most ${LIMITS.imageText} characters. ${EMPTY_NOTE}`,
        maxLength: LIMITS.imageText,
        examples: ['The main building to renovate (image 1); keep its geometry.'],
      })),
    },
    { additionalProperties: false, description: 'One input (reference) image. Unknown fields are rejected.' },
  );

  const OutputConfig = Type.Object(
    {
      storage_mode: Optional(Enum(STORAGE_MODES, {
        description: `Permanent: the image is kept under a stable file_id until deleted. Temporary: served through a signed link valid for 7 days. ${CASE_NOTE} ${EMPTY_NOTE}`,
        default: 'Temporary',
        examples: ['Temporary'],
      })),
      resolution: Optional(Enum(RESOLUTIONS, {
        description: `Output resolution: a class (720P, 1080P, 2K, 4K: the short side; the long side follows aspect_ratio) or an explicit WIDTHxHEIGHT. Default: a 1K class. ${CASE_NOTE} ${EMPTY_NOTE}`,
        examples: ['1080P', '1024x1024'],
      })),
      aspect_ratio: Optional(Enum(ASPECT_RATIOS, {
        description: `Width:height of the output. Only for model GEM. With an explicit WIDTHxHEIGHT resolution it must agree with that size. ${EMPTY_NOTE}`,
        examples: ['16:9'],
      })),
      person_generation: Optional(Enum(PERSON_GENERATION, {
        description: `AllowAdult: adults may be generated; Disallowed: no people or faces. ${CASE_NOTE} ${EMPTY_NOTE}`,
        examples: ['AllowAdult'],
      })),
      input_compliance_check: switchField('Compliance check of the input', 'Enabled'),
      output_compliance_check: switchField('Compliance check of the output', 'Enabled'),
    },
    { additionalProperties: false, description: `Output options. Unknown fields are rejected. ${EMPTY_NOTE}` },
  );

  const SubmitBody = Type.Object(
    {
      model_name: Enum(MODEL_NAMES, {
        description: `Model: GEM (Gemini), Qwen, Hunyuan. ${CASE_NOTE}`,
        examples: ['GEM'],
      }),
      model_version: Type.String({
        description: `Model version, depending on model_name: ${versionsText}.`,
        examples: ['3.0'],
      }),
      prompt: Optional(Type.String({
        description: `What to generate. Required (and not blank) when file_infos is empty or absent. At most ${LIMITS.prompt} characters.`,
        maxLength: LIMITS.prompt,
        examples: ['convert this image to anime style'],
      })),
      file_infos: Optional(Type.Array(FileInfo, {
        description: `Input images. At most, per model and version: ${imagesText}. ${EMPTY_NOTE}`,
        maxItems: MAX_IMAGES,
      })),
      negative_prompt: Optional(Type.String({
        description: `What the model should avoid. At most ${LIMITS.negativePrompt} characters. ${EMPTY_NOTE}`,
        maxLength: LIMITS.negativePrompt,
        examples: ['blur, distorted'],
      })),
      enhance_prompt: switchField('Let the model rewrite the prompt to improve quality', 'Enabled'),
      output_config: Optional(OutputConfig),
      session_id: Optional(Type.String({
        description: `De-duplication id: a second request from the same account with the same session_id within 3 days is refused (409). At most ${LIMITS.sessionId} characters. ${EMPTY_NOTE}`,
        maxLength: LIMITS.sessionId,
        examples: ['image-task-67890'],
      })),
      session_context: Optional(Type.String({
        description: `Opaque context returned with the result and in webhooks. At most ${LIMITS.sessionContext} characters. ${EMPTY_NOTE}`,
        maxLength: LIMITS.sessionContext,
        examples: ['{"user_id": "123", "scene": "profile_picture"}'],
      })),
      tasks_priority: Optional(Type.Union(
        [
          Type.Integer({ minimum: LIMITS.minPriority, maximum: LIMITS.maxPriority }),
          Type.String({ pattern: PRIORITY_STRING_PATTERN }),
        ],
        {
          description: `Priority, higher runs first: an integer from ${LIMITS.minPriority} to ${LIMITS.maxPriority}, given as a JSON number or a numeric string ("10", "-3"). ${EMPTY_NOTE} Default 0.`,
          default: 0,
          examples: [10, '-3'],
        },
      )),
      ext_info: Optional(Type.String({
        description: `Reserved for special uses; passed upstream as is. At most ${LIMITS.extInfo} characters. ${EMPTY_NOTE}`,
        maxLength: LIMITS.extInfo,
        examples: ['myextinfo'],
      })),
    },
    {
      additionalProperties: false,
      description:
        'An AIGC image-generation task. Unknown fields are rejected at every level. Enum values are matched ' +
        'case-insensitively (canonical spellings listed). In optional fields an empty string or null means the field ' +
        'is absent. Lengths are counted in UTF-16 code units (an emoji counts as two characters), so they hold upstream. ' +
        'Every error is a 400 whose message starts with the path of the offending field.',
      examples: [
        {
          model_name: 'GEM',
          model_version: '3.0',
          file_infos: [{ type: 'File', file_id: '387702299774574677', text: 'The original image' }],
          prompt: 'convert this image to anime style',
          negative_prompt: 'blur, distorted',
          enhance_prompt: 'Enabled',
          output_config: {
            storage_mode: 'Temporary',
            resolution: '1080P',
            aspect_ratio: '1:1',
            person_generation: 'AllowAdult',
            input_compliance_check: 'Enabled',
            output_compliance_check: 'Enabled',
          },
          session_id: 'image-task-67890',
          session_context: '{"user_id": "123", "scene": "profile_picture"}',
          tasks_priority: 10,
        },
        { model_name: 'Hunyuan', model_version: '3.0', prompt: 'a lighthouse at dawn, oil painting' },
      ],
    },
  );
  return { FileInfo, OutputConfig, SubmitBody };
}

const REQUEST = schemas('request');
const CANONICAL = schemas('canonical');
/** What a client may send (published in the OpenAPI document). */
export const SubmitRequestSchema = REQUEST.SubmitBody;
/** What validation returns: canonical spellings, nothing empty. */
export const CanonicalSubmitSchema = CANONICAL.SubmitBody;
export const FileInfoSchema = CANONICAL.FileInfo;
export const OutputConfigSchema = CANONICAL.OutputConfig;
