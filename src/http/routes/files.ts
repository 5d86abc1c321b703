import type { ServerResponse } from 'node:http';
import { Type } from '@sinclair/typebox';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { authenticate } from '../../app/auth';
import { MAX_INPUT_BYTES, UPLOADS_WAITING_AT_MOST } from '../../app/image-check';
import { admitUpload, deleteOwnFile, saveUpload, UPLOADS_IN_PROGRESS_AT_MOST, UPLOADS_IN_PROGRESS_PER_ACCOUNT, type FileDeps } from '../../app/uploads';
import { notFound, RelayError } from '../../domain/errors';
import type { FileRecord } from '../../ports/store';
import { callerOf, requireApiKey } from '../auth-hooks';
import type { HttpDeps } from '../context';
import { sendStoredFile } from '../file-response';
import { hungUpSignal } from '../hang-up';
import { errorResponses } from '../schemas';
import { readUpload, registerUploadParsers } from '../upload-body';

const FileParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) });

/**
 * Listeners one connection's hang-up signal may have: each upload in progress on it holds its place through one, and
 * each waiting for an image check one more (Node warns past the limit it is given). main.ts bounds uploads in
 * progress by UPLOADS_IN_PROGRESS_AT_MOST.
 */
const HANG_UP_LISTENERS = UPLOADS_IN_PROGRESS_AT_MOST + UPLOADS_WAITING_AT_MOST + 1;

/**
 * Gives an upload's place back once its response has ended or its connection has closed, whichever comes first. The
 * response's own 'close' is not enough: a pipelined response not yet attached to the socket never gets one when the
 * socket drops, and a socket that closed while the upload was being admitted sent it before anyone listened.
 */
function holdUntilAnsweredOrGone(leave: () => void, response: ServerResponse, gone: AbortSignal): void {
  const done = () => {
    response.off('close', done);
    gone.removeEventListener('abort', done);
    leave();
  };
  if (gone.aborted || response.destroyed) return done();
  response.once('close', done);
  gone.addEventListener('abort', done, { once: true });
}

/** The image formats the relay stores, as OpenAPI content: the bytes themselves. */
const IMAGE_CONTENT = Object.fromEntries(
  ['image/jpeg', 'image/png', 'image/webp'].map((type) => [type, { schema: Type.String({ format: 'binary' }) }]),
);

const UploadResponse = Type.Object({
  file_id: Type.String({ description: 'Use it in file_infos[] as {"type": "File", "file_id": …}.' }),
  url: Type.String({ description: 'A signed download link that does not expire (the file lives until deleted).' }),
  content_type: Type.Union([Type.Literal('image/jpeg'), Type.Literal('image/png'), Type.Literal('image/webp')]),
  size: Type.Integer({ description: 'Bytes.' }),
  width: Type.Integer(),
  height: Type.Integer(),
});

/**
 * Stored images: uploads (inputs), downloads (outputs and uploads) and deletion. A download is allowed with a signed
 * link (what results return) or with the owner's API key. An expired or tampered link is 403, not 404, so a client
 * can tell "ask for a fresh link" from "gone"; another account's file is 404, like an unknown one.
 */
export function fileRoutes(app: FastifyInstance, deps: HttpDeps): void {
  const fileDeps: FileDeps = {
    store: deps.store,
    storage: deps.storage,
    clock: deps.clock,
    uploadQuotaBytes: deps.config.uploadQuotaBytes,
    ...(deps.submit.requestRates ? { requestRates: deps.submit.requestRates } : {}),
    uploadsInProgress: deps.uploadsInProgress,
  };

  app.get<{ Params: { id: string }; Querystring: { expires?: string; signature?: string } }>(
    '/tencent-vod/v1/files/:id',
    {
      schema: {
        operationId: 'downloadFile',
        summary: 'Download a stored image (signed link, or Bearer key of the owner)',
        description:
          'Sends Content-Type, Content-Length, a strong ETag, Last-Modified and Cache-Control; honours If-None-Match ' +
          '(304) and a single byte Range (206, or 416 InvalidParameterValue.Range when outside the file), with If-Range. ' +
          'A signed link that was altered answers 403 AuthFailure.SignatureFailure; one past its expiry 403 ' +
          'AuthFailure.SignatureExpire (ask for a fresh link); without a link, a missing or wrong key is 401 AuthFailure.',
        tags: ['files'],
        // Either a signed link (no credentials) or the owner's key.
        security: [{}, { bearer: [] }],
        params: FileParams,
        querystring: Type.Object({ expires: Type.Optional(Type.String()), signature: Type.Optional(Type.String()) }),
        response: {
          200: { description: 'The image.', content: IMAGE_CONTENT },
          206: { description: 'The requested byte range of the image (Content-Range).', content: IMAGE_CONTENT },
          304: Type.Null({ description: 'Not modified (If-None-Match matched the ETag).' }),
          // 400: an id over the router's length, or `expires`/`signature` given twice.
          ...errorResponses(
            'InvalidParameterValue',
            'AuthFailure',
            'AuthFailure.SignatureFailure',
            'AuthFailure.SignatureExpire',
            'ResourceNotFound',
            'InvalidParameterValue.Range',
          ),
        },
      },
    },
    async (request, reply) => {
      const file = await downloadable(request);
      return sendStoredFile(request, reply, file, deps.storage, deps.clock.now());
    },
  );

  /** The file the request may download; throws 403 for a refused link, 401 for a refused key, 404 otherwise. */
  async function downloadable(
    request: FastifyRequest<{ Params: { id: string }; Querystring: { expires?: string; signature?: string } }>,
  ): Promise<FileRecord> {
    const { id } = request.params;
    const now = deps.clock.now();
    let file: FileRecord | undefined;
    if (request.query.signature !== undefined || request.query.expires !== undefined) {
      const verdict = deps.signer.verify(id, request.query.expires, request.query.signature, now);
      if (verdict === 'expired') throw new RelayError('AuthFailure.SignatureExpire', 'signature: this link has expired');
      if (verdict !== 'ok') throw new RelayError('AuthFailure.SignatureFailure', 'signature: invalid for this file and expiry');
      file = await deps.store.files.getFile(id);
    } else {
      const caller = await authenticate(deps.store, request.headers.authorization, now);
      file = await deps.store.files.getFile(id);
      if (file && file.accountId !== caller.accountId) file = undefined;
    }
    // Past its expiry a file is gone even before the cleanup job has removed it.
    if (!file || (file.expiresAt !== undefined && file.expiresAt <= now)) throw notFound('file', id);
    return file;
  }

  app.register(async (scope) => {
    requireApiKey(scope, deps);
    await registerUploadParsers(scope, MAX_INPUT_BYTES);

    scope.post(
      '/tencent-vod/v1/files',
      {
        schema: {
          operationId: 'uploadFile',
          summary: 'Upload an input image',
          description:
            'multipart/form-data with the image in field "file", or the image itself as an image/* body. jpeg, png ' +
            `and webp only, decided by the content (not the name or Content-Type); at most ${MAX_INPUT_BYTES} bytes. ` +
            'The file belongs to the calling account and stays until deleted. Uploads count against the key\'s rpm, ' +
            'and one account\'s uploads together may take at most the relay\'s upload quota (413 past it). At most ' +
            `${UPLOADS_IN_PROGRESS_PER_ACCOUNT} uploads of one account are in progress at once (429 LimitExceeded.Concurrency past it).`,
          tags: ['files'],
          security: [{ bearer: [] }],
          body: {
            content: {
              'multipart/form-data': { schema: Type.Object({ file: Type.String({ format: 'binary', description: 'The image (jpeg, png or webp).' }) }) },
              ...IMAGE_CONTENT,
            },
          },
          response: {
            201: UploadResponse,
            ...errorResponses(
              'InvalidParameter',
              'InvalidParameterValue',
              'MissingParameter',
              'AuthFailure',
              'RequestSizeLimitExceeded',
              'UnsupportedMediaType',
              'RequestLimitExceeded',
              'LimitExceeded.Concurrency',
              'ResourceUnavailable',
            ),
          },
        },
        // Before a byte of the body is read: too many uploads in progress, a key over its rpm, or an account whose
        // uploads fill its quota.
        preParsing: async (request, reply, payload) => {
          // A refusal here is made before a byte of the body is read, and none of it will be: the connection closes
          // after the answer (http/errors.ts sendError), so a client still sending learns at once.
          const leave = await admitUpload(fileDeps, callerOf(request));
          holdUntilAnsweredOrGone(leave, reply.raw, hungUpSignal(request.raw.socket, HANG_UP_LISTENERS));
          return payload;
        },
        // The body schema documents the form for OpenAPI; the body itself is read and checked by readUpload.
        validatorCompiler: () => (value) => ({ value }),
      },
      async (request, reply) => {
        const data = await readUpload(request, MAX_INPUT_BYTES);
        // A client that hangs up closes its socket: its upload leaves the line of image checks then and there.
        const gone = hungUpSignal(request.raw.socket, HANG_UP_LISTENERS);
        const file = await saveUpload(fileDeps, callerOf(request).accountId, data, gone);
        return reply.code(201).send({
          file_id: file.id,
          url: deps.signer.url(file.id, file.expiresAt),
          content_type: file.contentType,
          size: file.size,
          width: file.width,
          height: file.height,
        });
      },
    );

    scope.delete<{ Params: { id: string } }>(
      '/tencent-vod/v1/files/:id',
      {
        schema: {
          operationId: 'deleteFile',
          summary: 'Delete one of your files: an upload, or an output (Temporary or Permanent; its links answer 404 from then on)',
          tags: ['files'],
          security: [{ bearer: [] }],
          params: FileParams,
          response: { 204: Type.Null({ description: 'Deleted.' }), ...errorResponses('InvalidParameterValue', 'AuthFailure', 'ResourceNotFound') },
        },
      },
      async (request, reply) => {
        await deleteOwnFile(fileDeps, callerOf(request).accountId, request.params.id);
        return reply.code(204).send();
      },
    );
  });
}
