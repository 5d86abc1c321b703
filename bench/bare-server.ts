/**
 * The baseline: Node's own `http` server, reading the whole request body and answering with a fixed JSON body of
 * about the size and shape of the relay's submit answer. Runs as its own process (like the relay) and prints
 * `listening on http://127.0.0.1:PORT`.
 */
import http from 'node:http';

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

const server = http.createServer((request, response) => {
  request.resume();
  request.on('end', () => {
    response.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(BODY) });
    response.end(BODY);
  });
});
server.keepAliveTimeout = 72_000;
server.listen(0, '127.0.0.1', () => {
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  process.stdout.write(`listening on http://127.0.0.1:${port}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
