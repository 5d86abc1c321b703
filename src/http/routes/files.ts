import { createHash } from 'node:crypto';
import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { authenticate } from '../../app/auth';
import { notFound, RelayError } from '../../domain/errors';
import type { HttpDeps } from '../context';
import { errorResponses } from '../schemas';

/**
 * Serving stored images: with a signed link (`expires` + `signature`, what results return) or, for the owner,
 * with the API key. An expired or tampered link is 403, not 404, so a client can tell "ask again" from "gone".
 */
export function fileRoutes(app: FastifyInstance, deps: HttpDeps): void {
  app.get<{ Params: { id: string }; Querystring: { expires?: string; signature?: string } }>(
    '/tencent-vod/v1/files/:id',
    {
      schema: {
        summary: 'Download a stored image (signed link, or Bearer key of the owner)',
        tags: ['files'],
        params: Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) }),
        querystring: Type.Object({ expires: Type.Optional(Type.String()), signature: Type.Optional(Type.String()) }),
        response: errorResponses('AuthFailure', 'ResourceNotFound'),
      },
    },
    async (request, reply) => {
      const { id } = request.params;
      const file = await deps.store.files.getFile(id);
      if (request.query.signature !== undefined || request.query.expires !== undefined) {
        const verdict = deps.signer.verify(id, request.query.expires, request.query.signature, deps.clock.now());
        if (verdict !== 'ok') {
          return reply.code(403).send({
            Response: {
              Error: { Code: 'AuthFailure', Message: verdict === 'expired' ? 'signature: this link has expired' : 'signature: invalid' },
              RequestId: request.id,
            },
          });
        }
        if (!file) throw notFound('file', id);
      } else {
        const caller = await authenticate(deps.store, request.headers.authorization);
        if (!file || file.accountId !== caller.account.id) throw notFound('file', id);
      }
      if (file.expiresAt !== undefined && file.expiresAt <= deps.clock.now()) throw notFound('file', id);
      const data = await deps.storage.get(file.storageKey);
      if (!data) throw new RelayError('ResourceNotFound', `file ${JSON.stringify(id)}: content is gone`);
      const etag = `"${createHash('sha256').update(data).digest('base64url').slice(0, 27)}"`;
      reply.header('ETag', etag).header('Cache-Control', file.expiresAt ? 'private, max-age=3600' : 'private, max-age=86400, immutable');
      if (request.headers['if-none-match'] === etag) return reply.code(304).send();
      return reply.type(file.contentType).header('Content-Length', data.length).send(data);
    },
  );
}
