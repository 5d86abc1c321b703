import { Type, type TSchema } from '@sinclair/typebox';
import { ERROR_STATUS, type ErrorCode } from '../domain/errors';

/** Response schemas, shared by routes and the OpenAPI document. Bodies are open (additionalProperties) where the
 * presenter adds fields, so serialisation never silently drops one. */
export const ErrorEnvelope = Type.Object(
  {
    Response: Type.Object({
      Error: Type.Object({ Code: Type.String(), Message: Type.String() }),
      RequestId: Type.String(),
    }),
  },
  { $id: 'ErrorEnvelope', description: 'Tencent Cloud error envelope; Message names the field and the reason.' },
);

/** Documented error responses for a route, derived from the one code → status table. */
export function errorResponses(...codes: ErrorCode[]): Record<number, TSchema> {
  const out: Record<number, TSchema> = {};
  for (const code of [...codes, 'InternalError' as const]) {
    const status = ERROR_STATUS[code];
    const known = codes.filter((c) => ERROR_STATUS[c] === status);
    out[status] = Type.Ref('ErrorEnvelope', { description: known.length ? known.join(', ') : code });
  }
  return out;
}

const Open = { additionalProperties: true } as const;

export const TaskLog = Type.Object({
  message: Type.String(),
  level: Type.String(),
  source: Type.String(),
  timestamp: Type.Union([Type.String(), Type.Null()]),
});

export const TaskError = Type.Union([Type.Object({ code: Type.String(), message: Type.String() }), Type.Null()]);

export const StatusBody = Type.Object(
  {
    status: Type.Union([Type.Literal('IN_QUEUE'), Type.Literal('IN_PROGRESS'), Type.Literal('COMPLETED')]),
    request_id: Type.String(),
    queue_position: Type.Optional(Type.Integer({ minimum: 0 })),
    progress: Type.Integer({ minimum: 0, maximum: 100 }),
    response_url: Type.String(),
    status_url: Type.String(),
    cancel_url: Type.String(),
    logs: Type.Array(TaskLog),
    metrics: Type.Object({ queue_time: Type.Optional(Type.Number()), inference_time: Type.Optional(Type.Number()) }),
    outcome: Type.Optional(Type.Union([Type.Literal('succeeded'), Type.Literal('failed'), Type.Literal('cancelled')])),
    error: Type.Optional(TaskError),
  },
  { ...Open, description: 'fal-style status; COMPLETED whatever the outcome.' },
);

export const SubmitResponse = Type.Composite(
  [Type.Object({ Response: Type.Object({ TaskId: Type.String(), RequestId: Type.String() }) }), StatusBody],
  { ...Open, description: 'Tencent CreateAigcImageTask response plus the fal queue fields; TaskId = request_id.' },
);

export const ResultImage = Type.Object({
  url: Type.String({ description: 'Served by the relay; Temporary links are signed and expire after 7 days.' }),
  file_id: Type.String(),
  content_type: Type.String(),
  width: Type.Integer(),
  height: Type.Integer(),
  expires_at: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
});

export const ResultBody = Type.Object(
  {
    request_id: Type.String(),
    status: Type.Literal('COMPLETED'),
    outcome: Type.Union([Type.Literal('succeeded'), Type.Literal('failed'), Type.Literal('cancelled')]),
    error: TaskError,
    images: Type.Array(ResultImage),
    seed: Type.Union([Type.Integer(), Type.Null()]),
    produced_by: Type.Union([Type.String(), Type.Null()]),
    session_context: Type.Union([Type.String(), Type.Null()]),
  },
  { ...Open, description: 'The finished task. Before it finishes the route answers 202 with the status body.' },
);

export const TaskIdParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) });
