/**
 * The image formats the relay accepts as inputs (uploads and URL inputs), recognised by their first bytes only.
 * Names, extensions and Content-Type headers are never trusted: a `.png` that is really a GIF is a GIF.
 */
export type AcceptedImageType = 'image/jpeg' | 'image/png' | 'image/webp';

export const ACCEPTED_IMAGE_NAMES = 'jpeg, png or webp';

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

const startsWith = (data: Uint8Array, bytes: readonly number[], at = 0): boolean =>
  data.length >= at + bytes.length && bytes.every((b, i) => data[at + i] === b);

const ascii = (text: string): number[] => [...text].map((c) => c.charCodeAt(0));

/** The accepted type these bytes start with, or undefined. */
export function sniffImageType(data: Uint8Array): AcceptedImageType | undefined {
  // JPEG: SOI marker followed by the start of another marker.
  if (startsWith(data, [0xff, 0xd8, 0xff])) return 'image/jpeg';
  if (startsWith(data, PNG_SIGNATURE)) return 'image/png';
  // WebP: a RIFF container whose form type is WEBP.
  if (startsWith(data, ascii('RIFF')) && startsWith(data, ascii('WEBP'), 8)) return 'image/webp';
  return undefined;
}

/** A short, safe description of what the bytes look like instead, for error messages ("a GIF image", "text"). */
export function describeContent(data: Uint8Array): string {
  if (data.length === 0) return 'empty';
  if (startsWith(data, ascii('GIF8'))) return 'a GIF image';
  if (startsWith(data, ascii('BM'))) return 'a BMP image';
  if (startsWith(data, [0x49, 0x49, 0x2a, 0x00]) || startsWith(data, [0x4d, 0x4d, 0x00, 0x2a])) return 'a TIFF image';
  if (startsWith(data, ascii('%PDF'))) return 'a PDF document';
  if (startsWith(data, ascii('<svg')) || startsWith(data, ascii('<?xml'))) return 'XML or SVG';
  if (startsWith(data, ascii('<!DOCTYPE')) || startsWith(data, ascii('<html'))) return 'HTML';
  const head = data.subarray(0, 512);
  const printable = head.every((b) => b === 0x09 || b === 0x0a || b === 0x0d || (b >= 0x20 && b < 0x7f) || b >= 0x80);
  return printable ? 'text' : 'an unrecognised format';
}
