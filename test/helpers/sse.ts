import http from 'node:http';

/** One Server-Sent Event as the relay writes them: `event:`, `id:` and one JSON `data:` line. */
export interface Sse {
  readonly event: string;
  readonly data: any;
  /** The event's `id:` line, which a reconnecting client sends back as `Last-Event-ID`. */
  readonly id?: string;
}

/**
 * Opens an event stream at `url` with `headers`; `onEvent` sees each event as it arrives; `done` resolves with all
 * of them (and the status and type) when the server ends the stream.
 */
export function openEventStream(
  url: string,
  headers: Record<string, string>,
  onEvent: (e: Sse, request: http.ClientRequest) => void = () => {},
) {
  let request!: http.ClientRequest;
  const done = new Promise<{ status: number; type: string | undefined; events: Sse[] }>((resolve, reject) => {
    request = http.get(url, { agent: false, headers }, (res) => {
      const events: Sse[] = [];
      let buffer = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buffer += chunk;
        let cut: number;
        while ((cut = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          const event = /^event: (.*)$/m.exec(block)?.[1];
          const data = /^data: (.*)$/m.exec(block)?.[1];
          const eventId = /^id: (.*)$/m.exec(block)?.[1];
          if (event && data) {
            const e = { event, data: JSON.parse(data), ...(eventId === undefined ? {} : { id: eventId }) };
            events.push(e);
            onEvent(e, request);
          }
        }
      });
      res.on('end', () => resolve({ status: res.statusCode!, type: res.headers['content-type'], events }));
      res.on('error', reject);
    });
    request.on('error', reject);
  });
  return { done, request: () => request };
}
