// A worker thread starts without the main thread's TypeScript loader: register tsx here (as bin/aigc-relay.js does
// for the main thread), then load the thread's own module, named by whoever started it (thread-calls.ts).
import { workerData } from 'node:worker_threads';
import { register } from 'tsx/esm/api';

register();
await import(workerData.entry);
