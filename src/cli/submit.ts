import { constants as fsConstants } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { SingleBar, Presets } from 'cli-progress';
import { sniffImageType } from '../domain/image-format';
import { MODEL_NAMES, newestVersion } from '../domain/models';

export interface SubmitOptions {
  /** Absent: none is sent (the relay needs one only when no --file is given). */
  prompt?: string;
  model: string;
  /** Absent: the newest version of the model in the catalogue. */
  version?: string;
  resolution?: string;
  aspectRatio?: string;
  /** Input images: file ids, local paths (uploaded first) or http(s) URLs (inputImage). */
  file?: string[];
  priority?: string;
  wait: boolean;
  out: string;
  url: string;
  /** Absent: AIGC_RELAY_KEY. */
  key?: string;
}

interface StatusBody {
  status: 'IN_QUEUE' | 'IN_PROGRESS' | 'COMPLETED';
  progress?: number;
  queue_position?: number;
  status_url: string;
  response_url: string;
  outcome?: string;
  error?: { code: string; message: string } | null;
}

const STATUSES: readonly unknown[] = ['IN_QUEUE', 'IN_PROGRESS', 'COMPLETED'];

type Answer<T> = { ok: true; body: T } | { ok: false; status: number; detail: string; problem: string };

/** A request that got no answer at all (refused, reset, no such host): said in one line, not a stack trace. */
class Unreachable extends Error {}

async function call(url: string, init?: RequestInit): Promise<Response> {
  try {
    return await fetch(url, init);
  } catch (err) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    throw new Unreachable(`cannot reach ${url} (${cause?.code ?? cause?.message ?? (err as Error).message})`);
  }
}

/** A relay answer's JSON object, or what went wrong: `(HTTP status) Code: Message` for an error envelope. */
async function relayAnswer<T>(response: Response): Promise<Answer<T>> {
  const text = await response.text();
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  const isObject = typeof body === 'object' && body !== null;
  if (response.ok && isObject) return { ok: true, body: body as T };
  const error = isObject ? (body as { Response?: { Error?: { Code?: string; Message?: string } } }).Response?.Error : undefined;
  const detail = error ? `${error.Code}: ${error.Message}` : text.slice(0, 200) || 'an empty answer';
  return { ok: false, status: response.status, detail, problem: `(${response.status}) ${detail}` };
}

/** `aigc-relay submit`: an HTTP client of the relay, like any other client. Returns the process exit code. */
export async function runSubmit(options: SubmitOptions): Promise<number> {
  try {
    return await submitAndFollow(options);
  } catch (err) {
    if (!(err instanceof Unreachable)) throw err;
    process.stderr.write(`aigc-relay submit: ${err.message}\n`);
    return 1;
  }
}

async function submitAndFollow(options: SubmitOptions): Promise<number> {
  const key = options.key ?? process.env.AIGC_RELAY_KEY;
  if (!key) {
    process.stderr.write('aigc-relay submit: give --key or set AIGC_RELAY_KEY\n');
    return 2;
  }
  // Before the task is made (and charged): a directory the images cannot be saved in is found out now, not after.
  const outProblem = options.wait ? await outDirProblem(options.out) : undefined;
  if (outProblem) {
    process.stderr.write(`aigc-relay submit: --out ${options.out}: ${outProblem}\n`);
    return 1;
  }
  const headers = { authorization: `Bearer ${key}`, 'content-type': 'application/json' };
  const base = options.url.replace(/\/+$/, '');
  // Before the task is made (and charged) too: a local image is uploaded first, and one that cannot be stops here.
  const inputs: InputImage[] = [];
  for (const given of options.file ?? []) {
    const input = await inputImage(given, base, key);
    if ('problem' in input) {
      process.stderr.write(`aigc-relay submit: --file ${given}: ${input.problem}\n`);
      return 1;
    }
    inputs.push(input);
  }
  // Model names match case-insensitively, as the API does; an unknown one is sent as is for the API to refuse by name.
  const model = MODEL_NAMES.find((m) => m.toLowerCase() === options.model.toLowerCase());
  const version = options.version ?? (model ? newestVersion(model) : undefined);
  const body = {
    model_name: options.model,
    ...(version !== undefined ? { model_version: version } : {}),
    ...(options.prompt !== undefined ? { prompt: options.prompt } : {}),
    ...(inputs.length ? { file_infos: inputs } : {}),
    output_config: {
      ...(options.resolution ? { resolution: options.resolution } : {}),
      ...(options.aspectRatio ? { aspect_ratio: options.aspectRatio } : {}),
    },
    ...(options.priority !== undefined ? { tasks_priority: options.priority } : {}),
  };
  // Read like every other answer: a proxy's HTML error page in front of the relay is a refusal, not a crash.
  const submitted = await relayAnswer<StatusBody & { request_id: string }>(
    await call(`${base}/tencent-vod/v1/aigc-image`, { method: 'POST', headers, body: JSON.stringify(body) }),
  );
  if (!submitted.ok) {
    process.stderr.write(`rejected (${submitted.status}): ${submitted.detail}\n`);
    return 1;
  }
  const accepted = submitted.body;
  process.stdout.write(`accepted: ${accepted.request_id}\n`);
  if (!options.wait) {
    process.stdout.write(`status: ${accepted.status_url}\n`);
    return 0;
  }

  // The task is followed at the relay given with --url, not at the status_url and response_url its answer names: those
  // come from the relay's AIGC_RELAY_PUBLIC_URL (or, without one, the answering node's own address), and the key goes
  // with every poll. A public URL that is wrong, plain http behind an https proxy, or a node's inner address would
  // take the key to another origin, in clear or to whatever listens there.
  if (typeof accepted.request_id !== 'string' || accepted.request_id === '') {
    process.stderr.write(`aigc-relay submit: the answer names no request_id: ${JSON.stringify(accepted).slice(0, 200)}\n`);
    return 1;
  }
  const taskUrl = `${base}/tencent-vod/v1/requests/${encodeURIComponent(accepted.request_id)}`;
  const progress = showProgress();
  progress.update(0, `IN_QUEUE (position ${accepted.queue_position ?? 0})`);
  let status: StatusBody = accepted;
  let delay = 250;
  while (status.status !== 'COMPLETED') {
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay = Math.min(delay * 1.5, 2000);
    // An error answer is no status: read as one, it would never say COMPLETED.
    const polled = await relayAnswer<StatusBody>(await call(`${taskUrl}/status`, { headers }));
    if (!polled.ok || !STATUSES.includes(polled.body.status)) {
      progress.stop();
      process.stderr.write(`status poll failed: ${polled.ok ? `no status in ${JSON.stringify(polled.body).slice(0, 200)}` : polled.problem}\n`);
      return 1;
    }
    status = polled.body;
    const state = status.status === 'IN_QUEUE' ? `IN_QUEUE (position ${status.queue_position ?? 0})` : status.status;
    // The end is shown once, with its outcome, below.
    if (status.status !== 'COMPLETED') progress.update(status.progress ?? 0, state);
  }
  // A task that failed or was cancelled stopped where it was: "failed 100%" read as if it had got to the end.
  progress.update(status.outcome === 'succeeded' ? 100 : (status.progress ?? 0), status.outcome ?? 'COMPLETED');
  progress.stop();
  if (status.outcome !== 'succeeded') {
    process.stderr.write(`task ${status.outcome}: ${status.error ? `${status.error.code}: ${status.error.message}` : ''}\n`);
    return 1;
  }
  const result = await relayAnswer<{
    images: Array<{ url: string; file_id: string; content_type: string; width: number; height: number }>;
  }>(await call(taskUrl, { headers }));
  if (!result.ok) {
    process.stderr.write(`result fetch failed: ${result.problem}\n`);
    return 1;
  }
  for (const image of result.body.images) {
    const name = savedName(image);
    if (!name) {
      process.stderr.write(`result names ${JSON.stringify(image.file_id)} (${JSON.stringify(image.content_type)}): not a file id and image type the CLI saves\n`);
      return 1;
    }
    const download = await call(image.url);
    if (!download.ok) {
      const failed = await relayAnswer(download);
      process.stderr.write(`download of ${image.file_id} failed: ${failed.ok ? `(${download.status})` : failed.problem}\n`);
      return 1;
    }
    const data = Buffer.from(await download.arrayBuffer());
    const file = path.join(options.out, name);
    try {
      await fs.writeFile(file, data);
    } catch (err) {
      // The task is done and paid for: say where the image still is, in one line.
      process.stderr.write(`could not save ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); the image stays at ${image.url}\n`);
      return 1;
    }
    process.stdout.write(`saved ${file} (${image.width}x${image.height})\n`);
  }
  return 0;
}

/**
 * The task's progress on stderr: a bar on a terminal; elsewhere (a pipe, CI, a log file), where the bar draws nothing,
 * one line per change (`IN_PROGRESS 40%`), so `--wait` shows its progress wherever it runs.
 */
function showProgress(): { update(percent: number, state: string): void; stop(): void } {
  if (process.stderr.isTTY) {
    const bar = new SingleBar({ format: ' {bar} {percentage}% | {state}', hideCursor: true }, Presets.shades_classic);
    let started = false;
    return {
      update(percent, state) {
        if (!started) bar.start(100, percent, { state });
        else bar.update(percent, { state });
        started = true;
      },
      stop: () => bar.stop(),
    };
  }
  let last = '';
  return {
    update(percent, state) {
      const line = `${state} ${Math.round(percent)}%`;
      if (line === last) return;
      last = line;
      process.stderr.write(`${line}\n`);
    },
    stop() {},
  };
}

type InputImage = { type: 'File'; file_id: string } | { type: 'Url'; url: string };

/**
 * What a `--file` names, as a `file_infos` entry: an http(s) URL is a URL input (the relay fetches it when the task
 * runs); a path to a local file is uploaded first (`POST /tencent-vod/v1/files`, checked by its bytes there) and
 * sent as the file id the upload answers with; anything else is a file id already uploaded.
 */
async function inputImage(given: string, base: string, key: string): Promise<InputImage | { problem: string }> {
  if (/^https?:\/\//i.test(given)) return { type: 'Url', url: given };
  const stat = await fs.stat(given).catch(() => undefined);
  if (!stat) return { type: 'File', file_id: given };
  if (!stat.isFile()) return { problem: 'not a file' };
  const data = await fs.readFile(given);
  // The relay judges the bytes, not this header; a type it does not take is refused there by name.
  const type = sniffImageType(data) ?? 'application/octet-stream';
  const uploaded = await relayAnswer<{ file_id?: unknown }>(
    await call(`${base}/tencent-vod/v1/files`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': type }, body: data }),
  );
  if (!uploaded.ok) return { problem: `upload refused ${uploaded.problem}` };
  const id = uploaded.body.file_id;
  if (typeof id !== 'string' || id === '') return { problem: `the upload's answer names no file_id: ${JSON.stringify(uploaded.body).slice(0, 200)}` };
  process.stdout.write(`uploaded: ${given} as ${id}\n`);
  return { type: 'File', file_id: id };
}

/**
 * Why the images could not be saved in `dir`, or undefined (creating it if it is missing and its parent exists).
 * Only the last part is created: a mistyped path fails here in one line instead of growing a tree of directories.
 */
async function outDirProblem(dir: string): Promise<string | undefined> {
  try {
    const stat = await fs.stat(dir).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
      return undefined;
    });
    if (stat && !stat.isDirectory()) return 'not a directory';
    if (!stat) await fs.mkdir(dir);
    await fs.access(dir, fsConstants.W_OK);
    return undefined;
  } catch (err) {
    const { code, message } = err as NodeJS.ErrnoException;
    return code === 'ENOENT' ? 'its parent directory does not exist' : code === 'EACCES' ? 'not writable' : message;
  }
}

const EXTENSIONS: Record<string, string> = { 'image/jpeg': 'jpg', 'image/png': 'png', 'image/webp': 'webp' };

/**
 * The name an image is saved under in --out. The parts come from the relay's answer, so they are taken only in the
 * shapes the relay gives them (`file_…` ids, the three image types): a relay that is not what it seems (a wrong
 * --url, a proxy, plain http on a shared network) must not choose a path (`../../.bashrc`, an absolute one).
 */
function savedName(image: { file_id: unknown; content_type: unknown }): string | undefined {
  const extension = typeof image.content_type === 'string' ? EXTENSIONS[image.content_type] : undefined;
  if (typeof image.file_id !== 'string' || !/^[A-Za-z0-9_-]{1,128}$/.test(image.file_id) || !extension) return undefined;
  return `${image.file_id}.${extension}`;
}
