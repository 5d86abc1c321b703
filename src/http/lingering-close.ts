import type { Socket } from 'node:net';
import type { FastifyReply } from 'fastify';

/**
 * Closing a connection whose request body was not read to its end, without losing the answer (RFC 9112 §9.6).
 *
 * A refused upload is answered before its body has been read (too big, over the account's limits, an unknown part),
 * and the connection then closes so that the relay does not read the rest. Node closes a `Connection: close`
 * connection as soon as the answer is written; Linux answers a socket closed with bytes still unread with RST, and
 * a client still sending its body loses the answer it had not read yet: fetch with a FormData body saw EPIPE
 * instead of the 413. So the close is made in stages: the relay half-closes (its answer, then FIN), discards what
 * the client goes on sending until the client ends its side too, and closes. The discarding is bounded in time and
 * in bytes, so a refused client still cannot make the relay read a body without end.
 */
export interface Linger {
  /** How long a refused client may go on sending after its answer. */
  readonly ms: number;
  /** How much of it is discarded before the connection closes anyway. */
  readonly bytes: number;
}

export const DEFAULT_LINGER: Linger = { ms: 2000, bytes: 16 * 1024 * 1024 };

const lingering = new WeakSet<Socket>();

/** Answers with `Connection: close`, and closes the connection in stages once the answer is written. */
export function closeAfterAnswer(reply: FastifyReply, linger: Linger = DEFAULT_LINGER): void {
  reply.header('Connection', 'close');
  const socket = reply.request.raw.socket;
  if (lingering.has(socket)) return;
  lingering.add(socket);
  // Node's server ends the connection after its last answer with socket.destroySoon() (end, then destroy once the
  // answer is written); this socket's is replaced by one that waits for the client.
  socket.destroySoon = () => lingerThenClose(socket, linger);
}

function lingerThenClose(socket: Socket, linger: Linger): void {
  // The HTTP parser is done with this connection: what follows is the rest of a refused body, or requests pipelined
  // behind it, and those must not be served after an answer that said the connection closes.
  for (const listener of socket.listeners('data')) socket.off('data', listener as (chunk: Buffer) => void);
  const close = () => socket.destroy();
  const timer = setTimeout(close, linger.ms);
  socket.once('close', () => clearTimeout(timer));
  let left = linger.bytes;
  socket.on('data', (chunk: Buffer) => {
    left -= chunk.length;
    if (left < 0) close();
  });
  // The client has ended its side: nothing more will come, so closing now sends no RST. Wait for the answer to be
  // written out first (a client may end its side before reading it).
  socket.once('end', () => (socket.writableFinished ? close() : socket.once('finish', close)));
  socket.on('error', () => {}); // a client that resets instead: it is being closed anyway
  socket.end();
  readAgain(socket);
}

/**
 * Makes the socket read again. While Node's HTTP parser read the socket natively, the request's backpressure stopped
 * the socket's handle from reading, and a resume may be still on its way to it (Node's http server turns the
 * socket's 'resume' event into a read start; the 'data' listener above removed that listener, as it does for any).
 * The stream itself may believe it is flowing and be waiting for data, so resume() alone would not reach the handle.
 * This is what Node's own http server does on 'resume' (onSocketResume in _http_server.js).
 */
function readAgain(socket: Socket): void {
  socket.resume();
  const handle = (socket as unknown as { _handle?: { reading?: boolean; readStart?: () => number } })._handle;
  if (handle && handle.reading === false && typeof handle.readStart === 'function') {
    handle.reading = true;
    handle.readStart();
  }
}
