import sharp from 'sharp';
import type { GeneratedImage } from '../../src/ports/provider';

/** A tiny solid PNG as a provider returns it, for fake providers (ControlledProvider) to hand to the engine. */
export async function solidPng(background: string, width = 8, height = 8): Promise<GeneratedImage> {
  const data = await sharp({ create: { width, height, channels: 3, background } }).png().toBuffer();
  return { data, contentType: 'image/png', width, height };
}
