import { randomFillSync, randomUUID } from 'node:crypto';

/**
 * Task ids are UUIDv7 (RFC 9562: 48 bits of Unix milliseconds, then 74 random bits). Time-ordered ids keep every
 * index keyed by task id (tasks.id, ledger's once-per-task index, files, sessions) append-mostly: the tasks of one
 * group commit land on the same few B-tree pages instead of one random page each, which more than halved the
 * COMMIT of a batch of submits (BENCHMARKS.md). They remain UUIDs (fal-style; they fit Tencent's 50-character
 * SessionId), and the random part keeps them unguessable.
 */
export function newTaskId(now: number = Date.now()): string {
  // The random bits come from a v4 UUID: randomUUID draws from a pooled buffer, where randomBytes(16) costs a call
  // into the CSPRNG per id (8% of the submit path's main-thread time in a profile). v4 layout:
  // xxxxxxxx-xxxx-4xxx-Vxxx-xxxxxxxxxxxx, V already the RFC variant; v7 keeps all but the first 12 and the '4'.
  const random = randomUUID();
  const time = now.toString(16).padStart(12, '0');
  return `${time.slice(0, 8)}-${time.slice(8, 12)}-7${random.slice(15)}`;
}

/** Per-HTTP-request ids are never stored in an index: random v4 is fine. */
export const newRequestId = (): string => randomUUID();

/**
 * Random bytes from a pool refilled 4 KiB at a time: one call into the CSPRNG per few hundred ids instead of one per
 * id (every output file takes an id). The bytes are the CSPRNG's either way; a slice is handed out once.
 */
const pool = Buffer.alloc(4096);
let poolOffset = pool.length;
function pooledRandom(bytes: number): Buffer {
  if (bytes > pool.length) return randomFillSync(Buffer.alloc(bytes));
  if (poolOffset + bytes > pool.length) {
    randomFillSync(pool);
    poolOffset = 0;
  }
  poolOffset += bytes;
  return pool.subarray(poolOffset - bytes, poolOffset);
}

/** Short random ids with a readable prefix: `acct_…`, `key_…`, `file_…`. */
export function newId(prefix: string, bytes = 12): string {
  return `${prefix}_${pooledRandom(bytes).toString('base64url')}`;
}
