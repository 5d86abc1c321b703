import net from 'node:net';

/** A response read off a raw socket: status, headers (lower-cased), body. */
export interface RawResponse {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body: string;
  readonly raw: string;
}

/** Connects to a loopback relay; resolves with everything it sent when it closes the connection. */
export function rawExchange(baseUrl: string, bytes: string | Buffer, closeAfterMs = 10_000): Promise<string> {
  const { hostname, port } = new URL(baseUrl);
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: hostname, port: Number(port) });
    const chunks: Buffer[] = [];
    // A safety net only: every test here expects the server to close first.
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`server kept the connection open for ${closeAfterMs} ms`));
    }, closeAfterMs);
    socket.on('data', (c) => chunks.push(c));
    socket.on('error', () => undefined); // a reset after the answer is fine; 'close' follows
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString('utf8'));
    });
    socket.write(bytes);
  });
}

/** Parses the first response in `raw` (or throws if there is none). */
export function parseResponse(raw: string): RawResponse {
  const end = raw.indexOf('\r\n\r\n');
  if (end < 0) throw new Error(`no HTTP response in ${JSON.stringify(raw.slice(0, 200))}`);
  const [statusLine, ...lines] = raw.slice(0, end).split('\r\n');
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(statusLine ?? '')?.[1]);
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const i = line.indexOf(':');
    headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
  }
  const length = Number(headers['content-length'] ?? NaN);
  const rest = raw.slice(end + 4);
  return { status, headers, body: Number.isFinite(length) ? Buffer.from(rest).subarray(0, length).toString('utf8') : rest, raw };
}

/** One raw request that asks the server to close afterwards. */
export async function rawRequest(baseUrl: string, bytes: string | Buffer): Promise<RawResponse> {
  return parseResponse(await rawExchange(baseUrl, bytes));
}
