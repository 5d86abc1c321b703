import type { FileLinkSigner } from '../app/file-links';
import { isTerminal, publicStatus, tencentStatus } from '../domain/task-state';
import type { TaskRecord, TaskStatusView } from '../ports/store';

/** Shapes a task for each way the API shows it. Pure functions of the task and what the route looked up. */
const seconds = (ms: number): number => Math.round(ms) / 1000;
const iso = (ms: number | undefined): string | null => (ms === undefined ? null : new Date(ms).toISOString());
/** Tencent's own time format: UTC to the whole second (`2019-07-16T17:36:10Z`); a time not come yet is empty. */
const tencentTime = (ms: number | undefined): string => (ms === undefined ? '' : new Date(Math.floor(ms / 1000) * 1000).toISOString().replace('.000Z', 'Z'));

export function taskUrls(base: string, id: string) {
  const root = `${base}/tencent-vod/v1/requests/${id}`;
  return { response_url: root, status_url: `${root}/status`, cancel_url: `${root}/cancel` };
}

export function taskMetrics(task: Pick<TaskRecord, 'createdAt' | 'startedAt' | 'finishedAt'>, now: number): { queue_time?: number; inference_time?: number } {
  const metrics: { queue_time?: number; inference_time?: number } = {};
  // Until it started; one that ended without starting (cancelled or failed in the queue) waited until it ended.
  if (task.startedAt !== undefined) metrics.queue_time = seconds(task.startedAt - task.createdAt);
  else metrics.queue_time = seconds((task.finishedAt ?? now) - task.createdAt);
  if (task.startedAt !== undefined) metrics.inference_time = seconds((task.finishedAt ?? now) - task.startedAt);
  return metrics;
}

export function outcomeOf(task: Pick<TaskRecord, 'state' | 'error'>) {
  if (task.state !== 'succeeded' && task.state !== 'failed' && task.state !== 'cancelled') return {};
  return { outcome: task.state, error: task.error ? { code: task.error.code, message: task.error.message } : null };
}

export interface StatusExtras {
  readonly queuePosition?: number;
  readonly logs?: ReadonlyArray<{ at: number; message: string }>;
}

export function statusBody(task: TaskStatusView, base: string, now: number, extras: StatusExtras) {
  return {
    status: publicStatus(task.state),
    request_id: task.id,
    ...(task.state === 'queued' ? { queue_position: extras.queuePosition ?? 0 } : {}),
    progress: task.state === 'succeeded' ? 100 : task.progress,
    ...taskUrls(base, task.id),
    logs: (extras.logs ?? []).map((l) => ({ message: l.message, level: 'INFO', source: 'relay', timestamp: iso(l.at) })),
    metrics: taskMetrics(task, now),
    ...outcomeOf(task),
  };
}

/**
 * The submit's answer (the seed's shape): Tencent's `Response` and the fal queue fields. `queue_position` is always
 * there (the seed marks it required): 0 once nothing is ahead, i.e. the task has started or ended.
 */
export function submitBody(task: TaskRecord, base: string, now: number, queuePosition: number) {
  return {
    Response: { TaskId: task.id, RequestId: task.requestId },
    ...statusBody(task, base, now, { queuePosition }),
    queue_position: task.state === 'queued' ? queuePosition : 0,
  };
}

/**
 * A submit whose `Prefer: wait` saw the task finish: the result, still in the submit's shape, so a client written for
 * either (the seed's `Response.TaskId`, or the result's `images`) finds its fields.
 */
export function finishedSubmitBody(task: TaskRecord, base: string, now: number, signer: FileLinkSigner) {
  return { ...submitBody(task, base, now, 0), ...resultBody(task, base, now, signer) };
}

export function imagesOf(task: TaskRecord, signer: FileLinkSigner) {
  return (task.result?.images ?? []).map((image) => ({
    url: signer.url(image.file_id, image.expires_at),
    file_id: image.file_id,
    content_type: image.content_type,
    width: image.width,
    height: image.height,
    expires_at: iso(image.expires_at),
  }));
}

export function resultBody(task: TaskRecord, base: string, now: number, signer: FileLinkSigner) {
  const metrics = taskMetrics(task, now);
  return {
    request_id: task.id,
    status: publicStatus(task.state),
    ...outcomeOf(task),
    images: imagesOf(task, signer),
    seed: task.result?.seed ?? null,
    produced_by: task.result?.producedBy ?? null,
    model_name: task.input.model_name,
    model_version: task.input.model_version,
    session_context: task.input.session_context ?? null,
    timings: metrics,
    metrics,
    created_at: iso(task.createdAt),
    started_at: iso(task.startedAt),
    finished_at: iso(task.finishedAt),
    ...taskUrls(base, task.id),
  };
}

/**
 * A task in the client's list of its own tasks: what it is, where it stands and what it costs, without its images
 * (a list signs no links; `response_url` gives the result) and without a queue position (each would be a read).
 * `charged`: the credits captured (its price once it succeeded with billing on; 0 before, and if it did not).
 */
export function requestListItem(task: TaskRecord, base: string, now: number) {
  return {
    request_id: task.id,
    status: publicStatus(task.state),
    ...outcomeOf(task),
    progress: task.state === 'succeeded' ? 100 : task.progress,
    model_name: task.input.model_name,
    model_version: task.input.model_version,
    session_id: task.input.session_id ?? null,
    price: task.billed ? task.price : 0,
    charged: task.billed && task.state === 'succeeded' ? task.price : 0,
    metrics: taskMetrics(task, now),
    created_at: iso(task.createdAt),
    started_at: iso(task.startedAt),
    finished_at: iso(task.finishedAt),
    ...taskUrls(base, task.id),
  };
}

/** Tencent's DescribeTaskDetail shape, for clients written against VOD itself. */
export function describeTaskDetailBody(task: TaskRecord, signer: FileLinkSigner, requestId: string) {
  const ended = isTerminal(task.state);
  const input = task.input;
  return {
    Response: {
      TaskType: 'AigcImageTask',
      Status: tencentStatus(task.state),
      // Tencent's types are strings: a time that has not come yet is empty, not null.
      CreateTime: tencentTime(task.createdAt),
      BeginProcessTime: tencentTime(task.startedAt),
      FinishTime: tencentTime(task.finishedAt),
      AigcImageTask: {
        TaskId: task.id,
        // The task's own status takes only these two (Tencent's AigcImageTask); WAITING and ABORTED are the outer one's.
        Status: ended ? 'FINISH' : 'PROCESSING',
        // Non-zero for any end but success (a cancelled task made nothing either), as Tencent's ErrCode/ErrCodeExt say.
        ErrCode: ended && task.state !== 'succeeded' ? 1 : 0,
        ErrCodeExt: task.state === 'succeeded' || !task.error ? '' : task.error.code,
        Message: task.error?.message ?? '',
        Progress: task.state === 'succeeded' ? 100 : task.progress,
        Input: {
          ModelName: input.model_name,
          ModelVersion: input.model_version,
          Prompt: input.prompt ?? '',
          NegativePrompt: input.negative_prompt ?? '',
          EnhancePrompt: input.enhance_prompt ?? '',
          FileInfos: input.file_infos.map((f) => ({ Type: f.type, FileId: f.file_id ?? '', Url: f.url ?? '', Text: f.text ?? '' })),
          OutputConfig: {
            StorageMode: input.output_config.storage_mode,
            Resolution: input.output_config.resolution ?? '',
            AspectRatio: input.output_config.aspect_ratio ?? '',
            PersonGeneration: input.output_config.person_generation ?? '',
            InputComplianceCheck: input.output_config.input_compliance_check ?? '',
            OutputComplianceCheck: input.output_config.output_compliance_check ?? '',
          },
        },
        Output: {
          FileInfos: imagesOf(task, signer).map((image, i) => ({
            FileType: image.content_type.replace('image/', '').replace('jpeg', 'jpg'),
            FileUrl: image.url,
            FileId: image.file_id,
            StorageMode: input.output_config.storage_mode,
            // Rounded down, as Tencent's format has no fraction: never later than the link's own expiry.
            ExpireTime: tencentTime(task.result?.images[i]?.expires_at),
          })),
        },
        SessionId: input.session_id ?? '',
        SessionContext: input.session_context ?? '',
      },
      SessionId: input.session_id ?? '',
      SessionContext: input.session_context ?? '',
      RequestId: requestId,
    },
  };
}
