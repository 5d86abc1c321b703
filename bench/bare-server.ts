/**
 * The baseline: Node's own `http` server, reading the whole request body and answering with a fixed JSON body of
 * about the size and shape of the relay's submit answer. Runs as its own process (like the relay) and prints
 * `listening on http://127.0.0.1:PORT`.
 *
 * `--durable FILE`: the same server, but a POST is answered only once its body is on disk: written to FILE and
 * covered by an fdatasync, the fsyncs group-committed (every body written while one runs waits for the next), as
 * the relay's SQLite commits are. Nothing is cheaper and durable, so this is the floor under the relay's latency
 * on this disk: what durability costs before any of the relay's own work (BENCHMARKS.md, Method).
 */
import fs from 'node:fs';
import http from 'node:http';
import { durableLog } from './durable-log';

const BODY = JSON.stringify({
  Response: { TaskId: '00000000-0000-4000-8000-000000000000', RequestId: '00000000-0000-4000-8000-000000000001' },
  request_id: '00000000-0000-4000-8000-000000000000',
  status: 'IN_QUEUE',
  queue_position: 0,
  progress: 0,
  response_url: 'http://127.0.0.1:1/tencent-vod/v1/requests/00000000-0000-4000-8000-000000000000',
  status_url: 'http://127.0.0.1:1/tencent-vod/v1/requests/00000000-0000-4000-8000-000000000000/status',
  cancel_url: 'http://127.0.0.1:1/tencent-vod/v1/requests/00000000-0000-4000-8000-000000000000/cancel',
  logs: [],
  metrics: { queue_time: 0 },
});

/**
 * The durable file is written once in full and flushed before the server listens, then overwritten in place round
 * and round: a flush then carries only the data, never a size change or new blocks, as SQLite's WAL is rewritten
 * in place once checkpointed. Appending would make each fdatasync dearer than the relay's and no floor at all.
 */
const DURABLE_FILE_BYTES = 64 * 2 ** 20;
const durableFile = process.argv[process.argv.indexOf('--durable') + 1];
const log = process.argv.includes('--durable') && durableFile ? preallocated(durableFile) : undefined;

function preallocated(file: string): number {
  const fd = fs.openSync(file, 'w+');
  const chunk = Buffer.alloc(2 ** 20);
  for (let at = 0; at < DURABLE_FILE_BYTES; at += chunk.length) fs.writeSync(fd, chunk, 0, chunk.length, at);
  fs.fsyncSync(fd);
  return fd;
}

let position = 0;
const append =
  log === undefined
    ? undefined
    : durableLog({
        write: (data, done) => {
          if (position + data.length > DURABLE_FILE_BYTES) position = 0;
          fs.write(log, data, 0, data.length, position, (error) => done(error));
          position += data.length;
        },
        fdatasync: (done) => fs.fdatasync(log, done),
      });

const server = http.createServer((request, response) => {
  // Unchanged from before the durable mode (the baseline's cost must not move): the plain server reads and drops.
  const chunks: Buffer[] = [];
  if (log === undefined) request.resume();
  else request.on('data', (chunk: Buffer) => chunks.push(chunk));
  request.on('end', () => {
    const answer = () => {
      response.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(BODY) });
      response.end(BODY);
    };
    if (append === undefined || request.method !== 'POST') return answer();
    append(Buffer.concat(chunks), answer);
  });
});
server.keepAliveTimeout = 72_000;
server.listen(0, '127.0.0.1', () => {
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  process.stdout.write(`listening on http://127.0.0.1:${port}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
