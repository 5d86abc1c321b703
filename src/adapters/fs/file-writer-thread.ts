/**
 * The file-writer thread: each put's mkdir, write and rename run here, synchronously, and its flushes wait on
 * libuv's pool with their callbacks on this thread's loop; on the main thread, handing those steps over and taking
 * their callbacks was a quarter of it at 1k tasks/s. Puts run concurrently: flushing a new file costs about 1 ms on
 * a slow disk, and the disk takes several at once (durable-files.ts). Started by file-storage.ts through
 * threads/thread-calls.ts; `file` is resolved and checked against the root there.
 */
import { serveCalls } from '../threads/serve-calls';
import { DurableWriter } from './durable-writer';

const writer = new DurableWriter('w');

serveCalls(
  { files: { put: (file: string, data: Uint8Array) => writer.put(file, data) } },
  async (work) => work(),
  () => undefined,
);
