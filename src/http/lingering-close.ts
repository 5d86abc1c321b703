import type { IncomingHttpHeaders } from 'node:http';
import { Socket } from 'node:net';
import type { FastifyInstance, FastifyReply } from 'fastify';

/**
 * Closing a connection whose request body was not read to its end, without losing the answer (RFC 9112 §9.6).
 *
 * A request refused before its body has arrived (too big, a bad key or type, an upload over its account's limits)
 * is answered with `Connection: close`, so that the relay does not read the rest of the body. Node closes such a
 * connection as soon as the answer is written; Linux answers a socket closed with bytes still unread with RST, and
 * a client still sending its body loses the answer it had not read yet: fetch with a FormData body saw EPIPE
 * instead of the 413. So the close is made in stages: from the refusal on, HTTP parsing stops and what comes is
 * discarded; once the answer is written the relay half-closes (FIN), waits for the client to end its side too, and
 * closes. The discarding is bounded in time and bytes, so a refused client still cannot make the relay read a body
 * without end; a server shutting down does not wait for it.
 */
export interface Linger {
  /** How long a refused client may go on sending after its answer. */
  readonly ms: number;
  /** How much it may send from the refusal on before the connection closes anyway. */
  readonly bytes: number;
}

export const DEFAULT_LINGER: Linger = { ms: 2000, bytes: 16 * 1024 * 1024 };

/** Whether a request's framing says a body follows (RFC 9112 §6.3): chunked, or a Content-Length over 0. */
export const declaresBody = (headers: IncomingHttpHeaders): boolean =>
  headers['transfer-encoding'] !== undefined || Number(headers['content-length'] ?? 0) > 0;

declare module 'fastify' {
  interface FastifyInstance {
    readonly lingeringClose: LingeringClose;
  }
}

class LingeringClose {
  /** Connections refused and not yet closed. */
  private readonly sockets = new Set<Socket>();
  private shuttingDown = false;

  constructor(private readonly linger: Linger) {}

  begin(reply: FastifyReply): void {
    reply.header('Connection', 'close');
    const socket = reply.request.raw.socket;
    // Requests injected in process (app.inject) have no connection to close.
    if (!(socket instanceof Socket) || this.sockets.has(socket) || socket.destroyed) return;
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
    const close = () => socket.destroy();
    // Parsing stops now, not once the answer is out: a request pipelined behind the refused body must not be
    // served after an answer that says the connection closes (its own answer would be lost).
    discardIncoming(socket, this.linger.bytes, close);
    // Node's server ends the connection after its last answer with socket.destroySoon() (end, then destroy once
    // written); this socket's is replaced by one that waits for the client.
    socket.destroySoon = () => {
      socket.end();
      if (this.shuttingDown) return closeOnceWritten(socket);
      const timer = setTimeout(close, this.linger.ms);
      socket.once('close', () => clearTimeout(timer));
    };
  }

  /** Whether this connection's answer said it closes: nothing more read on it may be served. */
  refused(socket: Socket): boolean {
    return this.sockets.has(socket);
  }

  /** The server is closing: connections whose answer is written close now, the others as soon as it is. */
  shutDown(): void {
    this.shuttingDown = true;
    for (const socket of this.sockets) if (socket.writableEnded) closeOnceWritten(socket);
  }
}

/** Registers the lingering close for `closeAfterAnswer` (http/errors.ts sendError), and ends it on shutdown. */
export function installLingeringClose(app: FastifyInstance, linger: Linger = DEFAULT_LINGER): void {
  const lingering = new LingeringClose(linger);
  app.decorate('lingeringClose', lingering);
  // A refusal answered at once (a bad path, a 404) is made while Node is still parsing the read it came in, and a
  // request pipelined in that same read still reaches the app. The connection said it closes, so that request is not
  // served: it gets no answer, and its client learns from the connection closing that nothing was done. Registered
  // before every other onRequest hook.
  app.addHook('onRequest', (request, reply, done) => {
    if (!lingering.refused(request.raw.socket)) return done();
    reply.hijack();
  });
  app.addHook('preClose', (done) => {
    lingering.shutDown();
    done();
  });
}

/** Answers with `Connection: close`, stops reading the request, and closes the connection in stages. */
export function closeAfterAnswer(reply: FastifyReply): void {
  reply.server.lingeringClose.begin(reply);
}

function closeOnceWritten(socket: Socket): void {
  if (socket.writableFinished) socket.destroy();
  else socket.once('finish', () => socket.destroy());
}

function discardIncoming(socket: Socket, bytes: number, close: () => void): void {
  // Node's HTTP parser is fed by the socket's 'data' and told of its end by 'end': both are taken from it.
  for (const listener of socket.listeners('data')) socket.off('data', listener as (chunk: Buffer) => void);
  for (const listener of socket.listeners('end')) socket.off('end', listener as () => void);
  let left = bytes;
  socket.on('data', (chunk: Buffer) => {
    left -= chunk.length;
    if (left < 0) close();
  });
  // The client has ended its side: nothing more will come, so closing sends no RST. A client may end its side
  // before its answer is written out; the answer goes first.
  socket.once('end', () => closeOnceWritten(socket));
  socket.on('error', () => {}); // a client that resets instead: it is being closed anyway
  readAgain(socket);
}

/**
 * Makes the socket read again. While Node's HTTP parser read the socket natively, the request's backpressure stopped
 * the socket's handle from reading, and a resume may be still on its way to it (Node's http server turns the
 * socket's 'resume' event into a read start; taking the 'data' listeners removed that listener, as adding any
 * 'data' listener does). The stream itself may believe it is flowing and be waiting for data, so resume() alone
 * would not reach the handle. This is what Node's own http server does on 'resume' (onSocketResume in
 * _http_server.js).
 */
function readAgain(socket: Socket): void {
  socket.resume();
  const handle = (socket as unknown as { _handle?: { reading?: boolean; readStart?: () => number } })._handle;
  if (handle && handle.reading === false && typeof handle.readStart === 'function') {
    handle.reading = true;
    handle.readStart();
  }
}
