import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { checkInputImage, IMAGE_DECODES, MAX_WHOLE_DECODE_BYTES } from '../../src/app/image-check';

/** One colour: a huge image compresses to almost nothing and encodes in well under a second. */
const uniform = (width: number, height: number, channels: 3 | 4) =>
  sharp({ create: { width, height, channels, background: { r: 40, g: 120, b: 200, alpha: 0.5 } } });

const reasonOf = async (data: Buffer) => {
  const check = await checkInputImage(data);
  return check.ok ? 'accepted' : `${check.problem}: ${check.reason}`;
};

describe('checkInputImage: an image decoded whole in memory is decoded alone', () => {
  it('a webp (decoded whole) waits for every decode turn: never two whole decodes, nor one beside another check', async () => {
    const webp = await uniform(64, 64, 4).webp().toBuffer();
    let releaseHeld!: () => void;
    const held = IMAGE_DECODES.run(() => new Promise<void>((resolve) => (releaseHeld = resolve))); // another check, decoding
    const check = checkInputImage(webp);
    const waiting = new Promise<string>((resolve) => {
      const look = () => (IMAGE_DECODES.queued > 0 ? resolve('waiting for the turns') : setImmediate(look));
      look();
    });
    expect(await Promise.race([waiting, check.then(() => 'decoded beside the other')])).toBe('waiting for the turns');
    releaseHeld();
    await held;
    expect(await check).toMatchObject({ ok: true, contentType: 'image/webp', width: 64, height: 64 });
  });
});

describe('checkInputImage: an image decoded whole in memory is capped from its header', () => {
  it('MAX_WHOLE_DECODE_BYTES lets an 8-bit RGBA 8K image through', () => {
    expect(7680 * 4320 * 4).toBeLessThanOrEqual(MAX_WHOLE_DECODE_BYTES);
  });

  it.each([
    ['an interlaced 16-bit png', () => uniform(5000, 5000, 3).toColourspace('rgb16').png({ progressive: true }), 'an interlaced png image', '5000 × 5000 pixels × 6 bytes = 144 MiB'],
    ['a progressive jpeg', () => uniform(7000, 7000, 3).jpeg({ progressive: true }), 'a progressive jpeg image', '7000 × 7000 pixels × 3 bytes = 141 MiB'],
  ])('%s over the cap is refused naming the limit, before any pixel is decoded', async (_, make, kind, size) => {
    const image = await make().toBuffer();
    const expected = `corrupt: ${kind} is decoded whole in memory, so it may decode to at most 128 MiB; this one is ${size} (send it smaller, or as a baseline jpeg or a non-interlaced png)`;
    expect(await reasonOf(image)).toBe(expected);
    // Half its pixel data is missing, which a decode would find: the answer is the same, from the header alone.
    expect(await reasonOf(image.subarray(0, Math.floor(image.length / 2)))).toBe(expected);
  });

  it('a webp counts 4 bytes a pixel (libwebp decodes to RGBA), even with 3 channels: a file of a few bytes that would decode to 138 MiB is refused', async () => {
    const image = await uniform(6000, 6000, 3).webp({ lossless: true, effort: 0 }).toBuffer();
    expect(await reasonOf(image)).toMatch(/^corrupt: a webp image is decoded whole in memory, so it may decode to at most 128 MiB; this one is 6000 × 6000 pixels × 4 bytes = 138 MiB/);
  });

  it('an 8-bit RGBA 8K image passes as a webp and as an interlaced png', async () => {
    for (const image of [await uniform(7680, 4320, 4).webp({ lossless: true, effort: 0 }).toBuffer(), await uniform(7680, 4320, 4).png({ progressive: true }).toBuffer()]) {
      expect(await checkInputImage(image)).toMatchObject({ ok: true, width: 7680, height: 4320 });
    }
  });

  it('the same sizes pass as a baseline jpeg and a non-interlaced png: those are decoded a few rows at a time', async () => {
    expect(await checkInputImage(await uniform(7000, 7000, 3).jpeg().toBuffer())).toMatchObject({ ok: true, contentType: 'image/jpeg', width: 7000 });
    expect(await checkInputImage(await uniform(5000, 5000, 3).toColourspace('rgb16').png().toBuffer())).toMatchObject({ ok: true, contentType: 'image/png', width: 5000 });
  });
});

describe('checkInputImage: every pixel is still decoded', () => {
  it('a truncated interlaced png is refused (a random-access decode let it through)', async () => {
    const noise = sharp({ create: { width: 600, height: 400, channels: 3, background: '#808080', noise: { type: 'gaussian', mean: 128, sigma: 60 } } });
    const png = await noise.png({ progressive: true }).toBuffer();
    expect(await checkInputImage(png)).toMatchObject({ ok: true });
    expect(await reasonOf(png.subarray(0, Math.floor(png.length * 0.9)))).toBe('corrupt: not a readable png image (truncated or corrupt)');
  });

  // Peak memory, in a process of its own: VmHWM is the process's high-water mark of resident memory.
  it.runIf(process.platform === 'linux')('a 10,000 × 10,000 16-bit png (600 MB decoded) is checked as a stream: peak memory grows by well under 300 MiB', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'image-check-'));
    try {
      const file = path.join(dir, 'big.png');
      await uniform(10_000, 10_000, 3).toColourspace('rgb16').png().toFile(file);
      const module = path.resolve(__dirname, '../../src/app/image-check.ts');
      const script = `
        import fs from 'node:fs';
        const { checkInputImage } = await import(${JSON.stringify(module)});
        const data = fs.readFileSync(${JSON.stringify(file)});
        const peak = () => Number(/VmHWM:\\s+(\\d+)/.exec(fs.readFileSync('/proc/self/status', 'utf8'))[1]) * 1024;
        const before = process.memoryUsage().rss;
        const check = await checkInputImage(data);
        console.log(JSON.stringify({ ok: check.ok, growth: peak() - before }));`;
      const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: path.resolve(__dirname, '../..'), timeout: 60_000 });
      const result = JSON.parse(stdout) as { ok: boolean; growth: number };
      expect(result.ok).toBe(true);
      // About 30 MiB streamed; a decode into memory took 590 MiB more (sharp 0.35, libvips 8.18).
      expect(result.growth / 1024 / 1024).toBeLessThan(300);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
