import multipart, { type MultipartFile } from '@fastify/multipart';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { FieldError, RelayError } from '../domain/errors';
import { closeAfterAnswer, declaresBody } from './lingering-close';

/**
 * Reading an upload (`POST /tencent-vod/v1/files`): a multipart form with the image in field `file`, or the image
 * itself as an `image/*` body. Both paths stop at `maxBytes` while streaming: a declared Content-Length over the
 * limit is refused before any body byte is read, and an undeclared (chunked) body is cut off as soon as the count
 * passes the limit; the rest of the body is not read (lingering-close.ts), never kept. The Content-Type only picks the parser:
 * the format is decided from the bytes afterwards (app/uploads.ts).
 */

/** Boundaries and part headers around the file; anything bigger than this beyond the file is not an image upload. */
const MULTIPART_OVERHEAD = 64 * 1024;

const megabytes = (bytes: number): string => `${Math.round((bytes / 1024 / 1024) * 10) / 10} MB`;

export const tooLarge = (maxBytes: number): RelayError =>
  new RelayError('RequestSizeLimitExceeded', `file: larger than ${megabytes(maxBytes)} (${maxBytes} bytes), the upload limit`);

/** Registers, in an encapsulated scope, the only body parsers the upload route understands. */
export async function registerUploadParsers(scope: FastifyInstance, maxBytes: number): Promise<void> {
  scope.removeAllContentTypeParsers();
  await scope.register(multipart, {
    limits: { fileSize: maxBytes, files: 1, fields: 10, fieldSize: 1024, parts: 12, headerPairs: 50 },
  });
  // Fastify tests a RegExp parser against the normalised header, parameters included (`image/png; charset="binary"`):
  // the pattern ends at the subtype or its first `;`, since parameters do not change the media type (RFC 9110 §8.3.1).
  scope.addContentTypeParser(/^image\/[a-z0-9.+-]+(?:;|$)/i, { parseAs: 'buffer', bodyLimit: maxBytes }, (_request, body, done) =>
    done(null, body),
  );
  // Requests here with a body that no route reads (a DELETE sent with one): the connection closes after the answer,
  // in stages (lingering-close.ts), so the rest is discarded within its bounds rather than read to the end.
  const unread = new WeakSet<FastifyRequest>();
  scope.addHook('onSend', (request, reply, payload, done) => {
    if (unread.has(request) && !request.raw.complete) closeAfterAnswer(reply);
    done(null, payload);
  });
  scope.addContentTypeParser('*', (request, _payload, done) => {
    // Only the upload (the one POST here) takes a body. A DELETE of a file sent with `Content-Type: application/json`
    // (even with an empty chunked body) goes on as without the header; so does an upload that declares no body.
    if (request.method !== 'POST' || !declaresBody(request.headers)) {
      if (declaresBody(request.headers)) unread.add(request);
      done(null, undefined);
      return;
    }
    const type = request.headers['content-type'];
    done(
      new RelayError(
        'UnsupportedMediaType',
        `Content-Type: ${type ? JSON.stringify(type) + ' is not accepted' : 'missing'}; send multipart/form-data with the image in field "file", or the image itself as an image/* body`,
      ),
      undefined,
    );
  });
  // A refusal before the body has ended closes the connection after the answer (http/errors.ts sendError), so the
  // rest of an oversized or refused upload is not read.
  scope.setErrorHandler((error) => {
    // Fastify's own limit error (image/* parser): say which limit; the app's handler then answers.
    if ((error as { code?: string }).code === 'FST_ERR_CTP_BODY_TOO_LARGE') throw tooLarge(maxBytes);
    throw error;
  });
}

/** The uploaded bytes, at most `maxBytes`. Throws the 4xx RelayErrors a client should see. */
export async function readUpload(request: FastifyRequest, maxBytes: number): Promise<Buffer> {
  if (!request.isMultipart()) {
    if (Buffer.isBuffer(request.body)) return request.body;
    throw new FieldError('MissingParameter', 'file', 'required; send multipart/form-data with field "file", or an image/* body');
  }
  const declared = Number(request.headers['content-length']);
  if (Number.isFinite(declared) && declared > maxBytes + MULTIPART_OVERHEAD) throw tooLarge(maxBytes);
  // Every part is read, not only up to the first file: a form with a second file is refused (the `files: 1` limit)
  // rather than stored with its second image silently dropped. Reading to the end must not mean reading without end:
  // a chunked body (no Content-Length to refuse up front) is cut off once it passes the same bound, whatever part
  // it is in.
  const parts = request.parts({ limits: { fileSize: maxBytes } })[Symbol.asyncIterator]();
  // The generator starts on its first next(), which pipes the body into the parser in the same tick; the counter is
  // attached after it, so that it cannot set the body flowing before the parser listens.
  let pending = parts.next();
  const overLimit = bodyBound(request, maxBytes + MULTIPART_OVERHEAD, () => tooLarge(maxBytes));
  let image: Buffer | undefined;
  let reading: MultipartFile['file'] | undefined;
  try {
    for (;;) {
      const next = await Promise.race([pending, overLimit.exceeded]);
      if (next.done) break;
      const part = next.value;
      if (part.type === 'file') {
        if (part.fieldname !== 'file') {
          part.file.resume();
          throw new FieldError('InvalidParameter', part.fieldname || 'file', 'unknown field; send the image in the multipart field "file"');
        }
        reading = part.file;
        image = await Promise.race([readFilePart(part.file, maxBytes), overLimit.exceeded]);
        reading = undefined;
      }
      pending = parts.next();
    }
  } catch (err) {
    reading?.destroy();
    // A plain field the parser would not take (a name like `constructor`, a JSON field that does not parse) is
    // reported once the form has ended; plain fields are not this route's business, so the image stands. (Only
    // then: a client that hung up after such a field is reported with the field's error too.)
    const code = (err as { code?: string }).code;
    if (image && request.raw.complete && (code === 'FST_PROTO_VIOLATION' || code === 'FST_INVALID_JSON_FIELD_ERROR')) return image;
    throw multipartError(err, maxBytes);
  } finally {
    overLimit.stop();
  }
  if (!image) throw new FieldError('MissingParameter', 'file', 'required; the form has no file part');
  return image;
}

/**
 * Counts the bytes of a body read straight off the request (@fastify/multipart reads `request.raw`, not the payload
 * a preParsing hook returns): once they pass `limit`, the parser is fed no more and `exceeded` rejects.
 */
function bodyBound(request: FastifyRequest, limit: number, error: () => Error): { exceeded: Promise<never>; stop: () => void } {
  let total = 0;
  let fail!: (err: Error) => void;
  const exceeded = new Promise<never>((_resolve, reject) => (fail = reject));
  exceeded.catch(() => {}); // seen through the race, or not at all
  const onData = (chunk: Buffer) => {
    total += chunk.length;
    if (total > limit) {
      stop();
      request.raw.unpipe();
      fail(error());
    }
  };
  const stop = () => request.raw.off('data', onData);
  request.raw.on('data', onData);
  return { exceeded, stop };
}

/** One file part's bytes, refused as soon as they pass `maxBytes`. */
async function readFilePart(file: MultipartFile['file'], maxBytes: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  // busboy stops delivering at fileSize but ends the part only at its closing boundary, i.e. after the client has
  // sent everything; 'limit' lets us answer at once instead.
  file.once('limit', () => file.destroy(tooLarge(maxBytes)));
  try {
    for await (const chunk of file) {
      total += (chunk as Buffer).length;
      if (total > maxBytes) throw tooLarge(maxBytes);
      chunks.push(chunk as Buffer);
    }
  } catch (err) {
    file.destroy();
    throw err;
  }
  if (file.truncated) throw tooLarge(maxBytes);
  return Buffer.concat(chunks, total);
}

function multipartError(err: unknown, maxBytes: number): RelayError {
  if (err instanceof RelayError) return err;
  const code = (err as { code?: string }).code;
  if (code === 'FST_REQ_FILE_TOO_LARGE') return tooLarge(maxBytes);
  // A second file is a malformed upload, not a large one: the client fixes it by splitting, not by shrinking.
  if (code === 'FST_FILES_LIMIT') return new FieldError('InvalidParameter', 'file', 'one image per request; this form has more than one file part');
  if (code === 'FST_PARTS_LIMIT' || code === 'FST_FIELDS_LIMIT') {
    return new RelayError('RequestSizeLimitExceeded', 'file: send one image per request, with no more than a few small fields');
  }
  const message = err instanceof Error ? err.message : String(err);
  return new FieldError('InvalidParameter', 'file', `malformed multipart body (${message})`);
}
