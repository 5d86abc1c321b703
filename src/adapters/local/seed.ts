import { createHash } from 'node:crypto';
import type { TaskInput } from '../../domain/task-input';

/**
 * Seeds for the local preview renderer. Everything here is a pure function of its arguments, so the same request
 * gives the same picture on every run, process and machine.
 */

/** First 32 bits (unsigned, big-endian) of the SHA-256 of `text` as UTF-8. */
export function hash32(text: string): number {
  return createHash('sha256').update(text, 'utf8').digest().readUInt32BE(0);
}

/** mulberry32: a tiny seeded PRNG returning floats in [0, 1). Same seed → same sequence. */
export function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The PRNG a picture is drawn from: prompt and seed both matter, so a new seed redraws the same prompt. */
export function pictureRng(prompt: string, seed: number): () => number {
  return mulberry32(hash32(`local-preview/picture\u0000${seed >>> 0}\u0000${prompt}`));
}

/**
 * The seed used when the client gives none: a hash of what the picture is *about* — model, version, prompt,
 * negative prompt, resolution, aspect ratio and the input image references. Per-request identifiers (task id,
 * `session_id`, priority, `ext_info`, storage and compliance switches) are deliberately left out, so submitting the
 * same request twice yields the same seed and therefore byte-identical preview images.
 */
export function deriveSeed(input: TaskInput): number {
  const material = [
    'aigc-relay/local-preview/seed/v1',
    input.model_name,
    input.model_version,
    input.prompt ?? '',
    input.negative_prompt ?? '',
    input.output_config.resolution ?? '',
    input.output_config.aspect_ratio ?? '',
    input.file_infos.map((f) => [f.type, f.file_id ?? '', f.url ?? '']),
  ];
  return hash32(JSON.stringify(material));
}

/** `explicit` when it is a usable integer (taken modulo 2^32), else the derived seed. */
export function resolveSeed(input: TaskInput, explicit?: number): number {
  return explicit !== undefined && Number.isSafeInteger(explicit) ? explicit >>> 0 : deriveSeed(input);
}
