import sharp, { type OverlayOptions, type Sharp } from 'sharp';
import { permanentError, type InputImage } from '../../ports/provider';
import { pictureRng } from './seed';

/**
 * The local preview pictures: a procedural scene drawn as SVG and rasterised by sharp (librsvg) directly at the
 * requested size, and a transformation of the client's input images. Neither is an AI model; both carry a caption
 * band saying so. Output depends only on the arguments (byte-identical for identical inputs on the same build of
 * sharp/libvips and the same fonts).
 *
 * Speed: the scene uses flat, partly transparent shapes plus one linear gradient (radial gradients and upscaling a
 * small render both cost several times more at 16 MP), and PNG uses a modest compression level.
 */
export type PreviewFormat = 'png' | 'jpeg';

export interface PictureOptions {
  readonly seed: number;
  readonly width: number;
  readonly height: number;
  readonly format: PreviewFormat;
}

export interface RenderOptions extends PictureOptions {
  readonly prompt: string;
}

export interface TransformOptions extends PictureOptions {
  /** Shown in the caption band; optional because image-only requests have no prompt. */
  readonly prompt?: string;
}

export const PREVIEW_CAPTION = 'LOCAL PREVIEW · not an AI model';
export const CAPTION_PROMPT_CHARS = 60;

const PNG_COMPRESSION = 3;
const JPEG_QUALITY = 88;
const FONT_FAMILY = 'DejaVu Sans, Noto Sans, Noto Sans CJK SC, Liberation Sans, Arial, sans-serif';
/** The largest side librsvg/cairo can draw. */
const MAX_SIDE = 32_767;

export function contentTypeOf(format: PreviewFormat): 'image/png' | 'image/jpeg' {
  return format === 'png' ? 'image/png' : 'image/jpeg';
}

/** Escapes text for SVG content and attributes, dropping characters XML 1.0 forbids (controls, lone surrogates). */
export function escapeXml(text: string): string {
  return text
    .replace(/[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, '')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&apos;');
}

/** The prompt as one line of at most `max` characters (code points), with an ellipsis when cut. */
export function promptExcerpt(prompt: string, max = CAPTION_PROMPT_CHARS): string {
  const chars = Array.from(prompt.replace(/\s+/g, ' ').trim());
  return chars.length <= max ? chars.join('') : `${chars.slice(0, max).join('').trimEnd()}…`;
}

export async function renderPreview(opts: RenderOptions): Promise<Buffer> {
  checkSize(opts.width, opts.height);
  return encode(sharp(Buffer.from(sceneSvg(opts), 'utf8')).removeAlpha(), opts.format);
}

/**
 * The first image cover-cropped to the target size with a seed-chosen colour treatment, the other images as a strip
 * of thumbnails along the top, and the caption band. An undecodable image fails permanently, naming its index.
 */
export async function transformInputs(images: readonly InputImage[], opts: TransformOptions): Promise<Buffer> {
  checkSize(opts.width, opts.height);
  const [first, ...rest] = images;
  if (!first) throw new Error('transformInputs needs at least one image');
  const { width, height } = opts;
  const rng = pictureRng(opts.prompt ?? '', opts.seed);
  const short = Math.min(width, height);

  // Colour work happens at the smaller of the source's and the target's resolution (a 1200x800 photo carries no
  // more detail at 16 MP, and modulate alone costs ~0.7 s there); only the last step scales to the exact size.
  const base = await decoding(0, async () => {
    const meta = await sharp(first.data).metadata();
    const scale = Math.min(1, Math.max(meta.autoOrient.width / width, meta.autoOrient.height / height));
    const workWidth = Math.max(1, Math.round(width * scale));
    const workHeight = Math.max(1, Math.round(height * scale));
    let pipeline = sharp(first.data, { autoOrient: true })
      .resize(workWidth, workHeight, { fit: 'cover', position: 'centre' })
      .flatten({ background: '#000000' })
      .modulate({
        brightness: 0.9 + rng() * 0.2,
        saturation: 0.6 + rng() * 0.8,
        hue: Math.floor(rng() * 360),
      });
    const effect = Math.floor(rng() * 4);
    const tint = hsl(rng() * 360, 55, 60);
    const sigma = Math.min(8, 0.75 + (short / 1000) * (0.5 + rng())) * scale;
    if (effect === 1 && sigma >= 0.3) pipeline = pipeline.blur(sigma);
    else if (effect === 2) pipeline = pipeline.tint(tint);
    else if (effect === 3) pipeline = pipeline.linear(1.3, -38);
    return pipeline.raw().toBuffer({ resolveWithObject: true });
  });

  const overlays: OverlayOptions[] = [];
  const band = captionBand(width, height);
  const margin = Math.max(2, Math.round(short * 0.02));
  const thumb = Math.round(short * 0.16);
  const border = Math.max(1, Math.round(thumb * 0.04));
  const fits = thumb > 2 * border + 2 ? Math.floor((width - margin) / (thumb + margin)) : 0;
  const shown = rest.slice(0, Math.max(0, fits));
  for (const [i, image] of shown.entries()) {
    const input = await decoding(i + 1, () =>
      sharp(image.data, { autoOrient: true })
        .resize(thumb - 2 * border, thumb - 2 * border, { fit: 'cover', position: 'centre' })
        .flatten({ background: '#ffffff' })
        .extend({ top: border, bottom: border, left: border, right: border, background: '#ffffff' })
        .png({ compressionLevel: 0 })
        .toBuffer(),
    );
    overlays.push({ input, left: margin + i * (thumb + margin), top: margin });
  }
  const extra = rest.length - shown.length;
  const line2 = opts.prompt
    ? promptExcerpt(opts.prompt)
    : `from ${images.length} input image${images.length === 1 ? '' : 's'}${extra > 0 ? ` (${extra} not shown)` : ''}`;
  overlays.push({
    input: Buffer.from(svgDocument(width, band.height, captionSvg(width, band.height, 0, line2)), 'utf8'),
    left: 0,
    top: band.top,
  });

  const composed = sharp(base.data, {
    raw: { width: base.info.width, height: base.info.height, channels: base.info.channels },
  })
    .resize(width, height, { fit: 'fill', kernel: 'cubic' })
    .composite(overlays);
  return encode(composed, opts.format);
}

/** Builds the scene SVG (exported for inspection and tests). */
export function sceneSvg(opts: RenderOptions): string {
  const { width: w, height: h } = opts;
  const rng = pictureRng(opts.prompt, opts.seed);
  const s = Math.min(w, h);
  const between = (lo: number, hi: number): number => lo + rng() * (hi - lo);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(rng() * items.length)] as T;
  const n = (v: number): string => (Math.round(v * 10) / 10).toString();

  const hue = rng() * 360;
  const hue2 = hue + pick([30, 150, 180, 210, 300]);
  const hue3 = hue2 + pick([-40, 40, 90]);
  const parts: string[] = [];

  // Sky: one linear gradient in a random direction.
  const angle = rng() * Math.PI * 2;
  const dx = Math.cos(angle) / 2;
  const dy = Math.sin(angle) / 2;
  parts.push(
    '<defs><linearGradient id="sky" x1="' + n(0.5 - dx) + '" y1="' + n(0.5 - dy) + '" x2="' + n(0.5 + dx) +
      '" y2="' + n(0.5 + dy) + '">' +
      `<stop offset="0" stop-color="${hsl(hue, 60, 16)}"/>` +
      `<stop offset="0.55" stop-color="${hsl(hue2, 62, 42)}"/>` +
      `<stop offset="1" stop-color="${hsl(hue3, 70, 72)}"/></linearGradient></defs>`,
    `<rect width="${w}" height="${h}" fill="url(#sky)"/>`,
  );

  // Sun or moon with a halo of concentric translucent discs.
  const sunX = between(0.15, 0.85) * w;
  const sunY = between(0.12, 0.42) * h;
  const sunR = between(0.07, 0.16) * s;
  const sunColour = hsl(hue3 + 20, 85, 82);
  for (let i = 4; i >= 1; i--) {
    parts.push(`<circle cx="${n(sunX)}" cy="${n(sunY)}" r="${n(sunR * (1 + i * 0.35))}" fill="${sunColour}" fill-opacity="0.08"/>`);
  }
  parts.push(`<circle cx="${n(sunX)}" cy="${n(sunY)}" r="${n(sunR)}" fill="${sunColour}"/>`);

  // Stars or bubbles.
  const dots = Math.floor(between(18, 42));
  for (let i = 0; i < dots; i++) {
    parts.push(
      `<circle cx="${n(rng() * w)}" cy="${n(rng() * h * 0.7)}" r="${n(between(0.002, 0.012) * s)}" ` +
        `fill="${hsl(hue2 + between(-30, 30), 80, 88)}" fill-opacity="${n(between(0.25, 0.8))}"/>`,
    );
  }

  // A few floating outlined shapes: rings, squares, triangles.
  const shapes = Math.floor(between(3, 7));
  for (let i = 0; i < shapes; i++) {
    const cx = rng() * w;
    const cy = between(0.05, 0.6) * h;
    const r = between(0.03, 0.09) * s;
    const stroke = `stroke="${hsl(hue + between(0, 360), 70, 75)}" stroke-width="${n(Math.max(1, s * 0.004))}" ` +
      `stroke-opacity="0.7" fill="${hsl(hue2, 60, 60)}" fill-opacity="${n(between(0.05, 0.3))}"`;
    const rot = n(rng() * 360);
    const kind = Math.floor(rng() * 3);
    if (kind === 0) parts.push(`<circle cx="${n(cx)}" cy="${n(cy)}" r="${n(r)}" ${stroke}/>`);
    else if (kind === 1) {
      parts.push(`<rect x="${n(cx - r)}" y="${n(cy - r)}" width="${n(2 * r)}" height="${n(2 * r)}" rx="${n(r * 0.15)}" ` +
        `transform="rotate(${rot} ${n(cx)} ${n(cy)})" ${stroke}/>`);
    } else {
      const pts = [0, 1, 2].map((k) => {
        const a = (k * 2 * Math.PI) / 3 - Math.PI / 2;
        return `${n(cx + Math.cos(a) * r)},${n(cy + Math.sin(a) * r)}`;
      });
      parts.push(`<polygon points="${pts.join(' ')}" transform="rotate(${rot} ${n(cx)} ${n(cy)})" ${stroke}/>`);
    }
  }

  // Layered ridges, darker towards the viewer.
  const layers = 3;
  for (let layer = 0; layer < layers; layer++) {
    const baseY = h * (0.5 + layer * 0.13 + between(-0.03, 0.03));
    const amplitude = h * between(0.04, 0.12) * (1 - layer * 0.2);
    const segments = Math.floor(between(6, 14));
    const phase = rng() * Math.PI * 2;
    const points: string[] = [`0,${h}`];
    for (let k = 0; k <= segments; k++) {
      const x = (k / segments) * w;
      const y = baseY - amplitude * (0.5 + 0.5 * Math.sin(phase + k * 1.3)) - amplitude * between(0, 0.6);
      points.push(`${n(x)},${n(y)}`);
    }
    points.push(`${w},${h}`);
    parts.push(`<polygon points="${points.join(' ')}" fill="${hsl(hue + layer * 12, 40, 30 - layer * 9)}" fill-opacity="0.92"/>`);
  }

  const band = captionBand(w, h);
  parts.push(captionSvg(w, band.height, band.top, opts.prompt ? promptExcerpt(opts.prompt) : '(no prompt)'));
  return svgDocument(w, h, parts.join(''));
}

/** The caption band's height and top edge for a picture of this size (about 8.5% of the short side). */
function captionBand(width: number, height: number): { height: number; top: number } {
  const bandHeight = Math.min(Math.max(1, Math.floor(height / 3)), Math.max(16, Math.round(Math.min(width, height) * 0.085)));
  return { height: bandHeight, top: height - bandHeight };
}

/** A dark translucent band with two lines: the fixed caption and `line2` (already a one-line excerpt). */
function captionSvg(width: number, bandHeight: number, top: number, line2: string): string {
  const pad = Math.max(2, Math.round(bandHeight * 0.2));
  const room = Math.max(1, width - 2 * pad);
  const size1 = Math.min(bandHeight * 0.34, room / textUnits(PREVIEW_CAPTION, 0.66));
  const size2 = Math.min(bandHeight * 0.27, room / textUnits(line2, 0.6));
  const y1 = top + bandHeight * 0.44;
  const y2 = top + bandHeight * 0.8;
  const f = (v: number): string => (Math.round(v * 10) / 10).toString();
  return (
    `<rect x="0" y="${top}" width="${width}" height="${bandHeight}" fill="#000000" fill-opacity="0.62"/>` +
    `<text x="${pad}" y="${f(y1)}" font-family="${FONT_FAMILY}" font-weight="bold" font-size="${f(size1)}" fill="#ffd54a">` +
    `${escapeXml(PREVIEW_CAPTION)}</text>` +
    `<text x="${pad}" y="${f(y2)}" font-family="${FONT_FAMILY}" font-size="${f(size2)}" fill="#ffffff">` +
    `${escapeXml(line2)}</text>`
  );
}

/** Rough text width in ems: Latin glyphs at `latin` em, wide (CJK, emoji) glyphs at 1 em. */
function textUnits(text: string, latin: number): number {
  let units = 0;
  for (const ch of text) units += (ch.codePointAt(0) ?? 0) >= 0x2e80 ? 1 : latin;
  return Math.max(units, 1);
}

function svgDocument(width: number, height: number, body: string): string {
  return (
    '<?xml version="1.0" encoding="UTF-8"?>' +
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">` +
    `${body}</svg>`
  );
}

function hsl(hue: number, saturation: number, lightness: number): string {
  const h = (((hue % 360) + 360) % 360) / 360;
  const s = Math.min(100, Math.max(0, saturation)) / 100;
  const l = Math.min(100, Math.max(0, lightness)) / 100;
  const q = l < 0.5 ? l * (1 + s) : l + s - l * s;
  const p = 2 * l - q;
  const channel = (t0: number): string => {
    const t = t0 < 0 ? t0 + 1 : t0 > 1 ? t0 - 1 : t0;
    const v = t < 1 / 6 ? p + (q - p) * 6 * t : t < 1 / 2 ? q : t < 2 / 3 ? p + (q - p) * (2 / 3 - t) * 6 : p;
    return Math.round(v * 255).toString(16).padStart(2, '0');
  };
  return `#${channel(h + 1 / 3)}${channel(h)}${channel(h - 1 / 3)}`;
}

function checkSize(width: number, height: number): void {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1 ||
    width > MAX_SIDE || height > MAX_SIDE) {
    throw permanentError('InvalidParameterValue', `output size ${width}x${height} cannot be rendered locally`);
  }
}

async function decoding<T>(index: number, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw permanentError('InvalidParameterValue', `file_infos[${index}]: the image could not be decoded (${reason})`);
  }
}

function encode(pipeline: Sharp, format: PreviewFormat): Promise<Buffer> {
  return format === 'png'
    ? pipeline.png({ compressionLevel: PNG_COMPRESSION }).toBuffer()
    : pipeline.jpeg({ quality: JPEG_QUALITY }).toBuffer();
}
