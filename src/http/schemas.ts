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
  // Any route may meet these: a database busy or unavailable (a lock past its timeout, PostgreSQL restarting) or a
  // relay shutting down is a 503 with Retry-After, whatever the route; a fault of the relay's own a 500.
  for (const code of [...codes, 'ResourceUnavailable' as const, 'InternalError' as const]) {
    const status = ERROR_STATUS[code];
    const known = codes.filter((c) => ERROR_STATUS[c] === status);
    out[status] = Type.Ref('ErrorEnvelope', { description: known.length ? known.join(', ') : UNLISTED[code] ?? code });
  }
  return out;
}

const UNLISTED: Partial<Record<ErrorCode, string>> = {
  ResourceUnavailable: 'ResourceUnavailable: the database is busy or unavailable, or the relay is shutting down; retry after Retry-After seconds',
};

const Open = { additionalProperties: true } as const;

export const TaskLog = Type.Object({
  message: Type.String(),
  level: Type.String(),
  source: Type.String(),
  timestamp: Type.Union([Type.String(), Type.Null()]),
});

const TaskMetrics = Type.Object({ queue_time: Type.Optional(Type.Number()), inference_time: Type.Optional(Type.Number()) });

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
    metrics: TaskMetrics,
    outcome: Type.Optional(Type.Union([Type.Literal('succeeded'), Type.Literal('failed'), Type.Literal('cancelled')])),
    error: Type.Optional(TaskError),
  },
  { ...Open, description: 'fal-style status; COMPLETED whatever the outcome.' },
);

/** Always in a submit's answer (the seed marks it required): 0 once nothing is ahead. */
const QueuePosition = Type.Object({ queue_position: Type.Integer({ minimum: 0 }) });

export const SubmitResponse = Type.Composite(
  [Type.Object({ Response: Type.Object({ TaskId: Type.String(), RequestId: Type.String() }) }), Type.Omit(StatusBody, ['queue_position']), QueuePosition],
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
    model_name: Type.String(),
    model_version: Type.String(),
    session_context: Type.Union([Type.String(), Type.Null()]),
    timings: TaskMetrics,
    metrics: TaskMetrics,
    created_at: Type.String({ format: 'date-time' }),
    started_at: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
    finished_at: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
    response_url: Type.String(),
    status_url: Type.String(),
    cancel_url: Type.String(),
  },
  { ...Open, description: 'The finished task. Before it finishes the route answers 202 with the status body.' },
);

/** A submit whose `Prefer: wait` saw the task finish (presenters.ts finishedSubmitBody): both shapes' fields. */
export const FinishedSubmitResponse = Type.Composite(
  [Type.Object({ Response: Type.Object({ TaskId: Type.String(), RequestId: Type.String() }) }), QueuePosition, Type.Pick(StatusBody, ['progress', 'logs']), ResultBody],
  { ...Open, description: 'The finished task, in the submit answer\'s shape too (Response, queue_position, logs).' },
);

/** Tencent's way: an ISO time, or empty until it happens. */
const LaterTime = Type.Union([Type.String({ format: 'date-time' }), Type.Literal('')]);

/** Tencent VOD's DescribeTaskDetail answer for an AIGC image task (presenters.ts describeTaskDetailBody). */
export const DescribeTaskDetailBody = Type.Object({
  Response: Type.Object(
    {
      TaskType: Type.Literal('AigcImageTask'),
      Status: Type.Union([Type.Literal('WAITING'), Type.Literal('PROCESSING'), Type.Literal('FINISH'), Type.Literal('ABORTED')]),
      CreateTime: Type.String({ format: 'date-time' }),
      BeginProcessTime: LaterTime,
      FinishTime: LaterTime,
      AigcImageTask: Type.Object(
        {
          TaskId: Type.String(),
          Status: Type.Union([Type.Literal('PROCESSING'), Type.Literal('FINISH')], { description: 'FINISH once it ended, however it ended' }),
          ErrCode: Type.Integer({ description: '0, or 1 when the task ended other than succeeded (failed or cancelled)' }),
          ErrCodeExt: Type.String({ description: "The failure's code; empty unless it failed or was cancelled" }),
          Message: Type.String(),
          Progress: Type.Integer({ minimum: 0, maximum: 100 }),
          Input: Type.Object(
            {
              ModelName: Type.String(),
              ModelVersion: Type.String(),
              Prompt: Type.String(),
              NegativePrompt: Type.String(),
              EnhancePrompt: Type.String(),
              FileInfos: Type.Array(Type.Object({ Type: Type.String(), FileId: Type.String(), Url: Type.String(), Text: Type.String() })),
              OutputConfig: Type.Object({
                StorageMode: Type.String(),
                Resolution: Type.String(),
                AspectRatio: Type.String(),
                PersonGeneration: Type.String(),
                InputComplianceCheck: Type.String(),
                OutputComplianceCheck: Type.String(),
              }),
            },
            Open,
          ),
          Output: Type.Object({
            FileInfos: Type.Array(
              Type.Object({
                FileType: Type.String({ description: 'jpg, png or webp' }),
                FileUrl: Type.String(),
                FileId: Type.String(),
                StorageMode: Type.String(),
                ExpireTime: Type.String({ description: 'ISO time; empty for Permanent files' }),
              }),
            ),
          }),
          SessionId: Type.String(),
          SessionContext: Type.String(),
        },
        Open,
      ),
      SessionId: Type.String(),
      SessionContext: Type.String(),
      RequestId: Type.String(),
    },
    Open,
  ),
});

export const TaskIdParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) });
