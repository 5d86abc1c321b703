/** What the upload tests share: images, requests, accounts, and holding the process's image checks. */
import { readdirSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import sharp from 'sharp';
import { expect } from 'vitest';
import { DECODES_AT_ONCE, IMAGE_DECODES } from '../../src/app/image-check';
import { UPLOADS_IN_PROGRESS_PER_ACCOUNT } from '../../src/app/uploads';
import { eventually } from '../helpers/eventually';
import type { TestRelay } from '../helpers/relay';

export const MB = 1024 * 1024;
/** A PNG of noise: it does not compress, so its size is about width × height × 3 bytes. */
export const noisyPng = (width: number, height: number) =>
  sharp({ create: { width, height, channels: 3, background: '#808080', noise: { type: 'gaussian', mean: 128, sigma: 60 } } })
    .png()
    .toBuffer();

export async function upload(relay: TestRelay, data: Buffer, key = relay.devKey, type = 'image/png') {
  const res = await fetch(`${relay.url}/tencent-vod/v1/files`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': type }, body: new Uint8Array(data) });
  return { status: res.status, retryAfter: res.headers.get('retry-after'), connection: res.headers.get('connection'), body: (await res.json()) as any };
}

/**
 * The upload files on disk that are the account's by their rows, or nobody's: bytes no row names, which a refused or
 * failed upload must never leave behind. Uploads sit in time buckets (app/file-keys.ts), not in a folder per account.
 */
export async function storedInputs(relay: TestRelay, accountId: string): Promise<string[]> {
  let entries;
  try {
    entries = readdirSync(path.join(relay.dataDir, 'files', 'inputs'), { recursive: true, withFileTypes: true });
  } catch {
    return [];
  }
  const found: string[] = [];
  for (const entry of entries.filter((e) => e.isFile())) {
    const row = await relay.relay.store.files.getFile(entry.name.split('.')[0]!);
    if (!row || row.accountId === accountId) found.push(entry.name);
  }
  return found;
}

/** Keys of `n` new accounts (at most UPLOADS_IN_PROGRESS_PER_ACCOUNT uploads of one account are in progress at once). */
export async function keysOfNewAccounts(relay: TestRelay, n: number): Promise<string[]> {
  const keys: string[] = [];
  for (let i = 0; i < n; i++) {
    const account = await relay.admin.post('/admin/v1/accounts', { name: `uploader-${i}`, balance: 0 });
    keys.push((await relay.admin.post(`/admin/v1/accounts/${account.body.id}/keys`, {})).body.key as string);
  }
  return keys;
}

/** The i-th of `keys`, round and round: uploads spread so that no account reaches its own bound. */
export const spread = (keys: readonly string[], i: number) => keys[i % keys.length]!;

export async function devAccount(relay: TestRelay): Promise<string> {
  return (await relay.relay.store.accounts.getKey(relay.devKey.slice(3).split('.')[0]!))!.accountId;
}

/** Takes every decode slot of the process until the returned function is called. */
export function holdDecodes(): () => Promise<void> {
  const releases: Array<() => void> = [];
  const held = Array.from({ length: DECODES_AT_ONCE }, () => IMAGE_DECODES.run(() => new Promise<void>((resolve) => releases.push(resolve))));
  return async () => {
    for (const release of releases) release();
    await Promise.all(held);
  };
}

/** All of an account's places are free: as many uploads as it may have at once all get in line, then succeed. */
export async function fillsItsPlaces(relay: TestRelay, key: string, png: Buffer) {
  const release = holdDecodes();
  try {
    const before = IMAGE_DECODES.queued;
    const all = Array.from({ length: UPLOADS_IN_PROGRESS_PER_ACCOUNT }, () => upload(relay, png, key));
    const refusedEarly = Promise.race(all.map((p) => p.then((r) => (r.status === 201 ? new Promise<never>(() => {}) : r))));
    await Promise.race([
      eventually("every place's upload in line", 10_000, () => IMAGE_DECODES.queued === before + UPLOADS_IN_PROGRESS_PER_ACCOUNT || undefined),
      refusedEarly.then((r) => expect.fail(`an upload was refused (${r.status} ${r.body.Response?.Error?.Code}): a place was never given back`)),
    ]);
    await release();
    expect((await Promise.all(all)).map((r) => r.status)).toEqual(all.map(() => 201));
  } finally {
    await release();
  }
}

/** Pipelined uploads written on one raw connection; resolves with the client socket and the server's side of it. */
export async function pipelined(relay: TestRelay, keys: readonly string[], png: Buffer, count: number) {
  const client = net.connect(Number(new URL(relay.url).port), '127.0.0.1');
  client.on('error', () => undefined);
  const serverSide = await new Promise<net.Socket>((resolve) => relay.relay.app.server.once('connection', resolve));
  const head = (key: string) =>
    `POST /tencent-vod/v1/files HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${key}\r\nContent-Type: image/png\r\nContent-Length: ${png.length}\r\n\r\n`;
  client.write(Buffer.concat(Array.from({ length: count }, (_, i) => [Buffer.from(head(keys[i % keys.length]!)), png]).flat()));
  return { client, serverSide };
}
