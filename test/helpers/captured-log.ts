import { Writable } from 'node:stream';
import pino, { type Logger } from 'pino';

/** A pino logger at `level` whose lines (one JSON text each) land in `lines`, for tests that read the server log. */
export function capturedLog(level: pino.Level = 'trace'): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk, _encoding, done) {
      lines.push(String(chunk));
      done();
    },
  });
  return { logger: pino({ level }, sink), lines };
}
