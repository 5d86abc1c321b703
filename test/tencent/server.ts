import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import sharp from 'sharp';
import type { Account, CreateOutcome, TaskResult, UpstreamTask } from './server-types';
import { refusalOfCreate } from './create-rules';
import { verifyTc3 } from './tc3';

export type { Account, CreateOutcome, TaskPlan, TaskResult, UpstreamTask } from './server-types';

/**
 * A Tencent VOD (2018-07-17) protocol server for tests, on 127.0.0.1. Every call must carry a valid TC3 signature
 * for one of its accounts (verified in tc3.ts; a bad one gets HTTP 200 with Response.Error
 * AuthFailure.SignatureFailure, as Tencent answers). It implements the actions the relay uses —
 * CreateAigcImageTask, DescribeTaskDetail, DescribeTasks, ManageTask (Abort), PullEvents, ConfirmEvents — and
 * serves the output images it reports as FileUrl.
 *
 * Behaviour is scripted per task by `onCreate` (accept with a plan, refuse with a code, or accept and answer late
 * so the caller's deadline passes). A task moves WAITING → PROCESSING → FINISH as it is polled, by a timer
 * (`finishAfterMs`), or when the test calls `finish`. SessionIds are de-duplicated per account like Tencent does.
 */
interface QueuedEvent {
  readonly taskId: string;
  handle: string;
  leasedUntil: number;
  deliveries: number;
  confirmedAt?: number;
}

interface AccountState {
  readonly account: Account;
  inFlight: number;
  maxInFlight: number;
  created: number;
  readonly events: QueuedEvent[];
  readonly pullers: Set<() => void>;
  /** DescribeTasks calls that still answer with an empty list (an index that lags behind). */
  hiddenListings: number;
  /** SessionIds of refused submissions (`refusedSessionsCount`). */
  readonly refusedSessions: Set<string>;
}

export interface TencentTestServerOptions {
  readonly accounts: readonly Account[];
  /** How long PullEvents waits for an event before answering empty (Tencent: up to 5 s). */
  readonly pullWaitMs?: number;
  /** An event not confirmed within this is offered again with a new handle (Tencent: 30 s). */
  readonly eventLeaseMs?: number;
  /** Which accounts produce AigcImageTaskComplete events. Default: all. */
  readonly eventsFor?: (account: Account) => boolean;
  /**
   * Tencent's docs refuse a SessionId when "a request with the same SessionId" came in the last days, which may
   * count refused requests too. When true, a SessionId refused once is refused as a duplicate ever after.
   */
  readonly refusedSessionsCount?: boolean;
}

export class TencentTestServer {
  readonly tasks = new Map<string, UpstreamTask>();
  /** Every API call: its action, the account that signed it, its error code if refused, and its X-TC-Language. */
  readonly calls: Array<{ action: string; secretId?: string; error?: string; language?: string }> = [];
  /** Every confirmed event handle, with the task it was about. */
  readonly confirmed: Array<{ handle: string; taskId: string; at: number }> = [];
  /** Every handle a ConfirmEvents call was refused for (unknown, or past its window). */
  readonly staleConfirms: string[] = [];
  /** While set, output image downloads wait for it (a slow download). */
  outputsHeld: Promise<void> | undefined;
  onCreate: (request: Record<string, any>, account: Account) => CreateOutcome = () => ({ kind: 'accept' });
  /** Whether this account's DescribeTasks answers an error (a listing that is down). */
  listingFails: (account: Account) => boolean = () => false;
  /** The HTTP status the output images are served with (anything but 200 answers without an image). */
  outputStatus: () => number = () => 200;
  /**
   * A broken or hostile upstream: called for every signed, parsed API call before the server acts on it. Return true
   * when it answered (or cut) `res` itself; the call is then recorded and nothing else happens.
   */
  rawAnswer: (action: string, params: Record<string, any>, res: http.ServerResponse) => boolean = () => false;
  /** Every GET of an output path: its path and the Host it was asked of. */
  readonly outputRequests: Array<{ path: string; host: string }> = [];
  /** Answers an output GET itself (a redirect, an odd body) when it returns true. */
  rawOutput: (req: http.IncomingMessage, res: http.ServerResponse) => boolean = () => false;
  /** What a task's output image `i` is served as (FileUrl); default: this server's own /outputs/ path. */
  outputUrl: ((task: UpstreamTask, i: number) => string) | undefined;
  /** Rewrites the AigcImageTask a task is described with (DescribeTaskDetail and events): a broken upstream's detail. */
  rewriteDetail: ((detail: Record<string, any>, task: UpstreamTask) => Record<string, any>) | undefined;
  private readonly accounts = new Map<string, AccountState>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly server: http.Server;
  private png: Buffer = Buffer.alloc(0);
  url = '';

  constructor(private readonly options: TencentTestServerOptions) {
    for (const account of options.accounts) {
      this.accounts.set(account.secretId, { account, inFlight: 0, maxInFlight: 0, created: 0, events: [], pullers: new Set(), hiddenListings: 0, refusedSessions: new Set() });
    }
    this.server = http.createServer((req, res) => void this.handle(req, res));
    this.server.keepAliveTimeout = 60_000;
  }

  static async start(options: TencentTestServerOptions): Promise<TencentTestServer> {
    const server = new TencentTestServer(options);
    server.png = await sharp({ create: { width: 64, height: 48, channels: 3, background: '#2a7' } }).png().toBuffer();
    await new Promise<void>((resolve) => server.server.listen(0, '127.0.0.1', resolve));
    server.url = `http://127.0.0.1:${(server.server.address() as AddressInfo).port}`;
    return server;
  }

  /** Upstream tasks (waiting or processing) of an account now, and the most there ever were at once. */
  stats(secretId: string): { inFlight: number; maxInFlight: number; created: number } {
    const s = this.accounts.get(secretId)!;
    return { inFlight: s.inFlight, maxInFlight: s.maxInFlight, created: s.created };
  }

  count(action: string, secretId?: string): number {
    return this.calls.filter((c) => c.action === action && (secretId === undefined || c.secretId === secretId)).length;
  }

  tasksOf(secretId: string): UpstreamTask[] {
    return [...this.tasks.values()].filter((t) => t.account.secretId === secretId);
  }

  bySession(sessionId: string): UpstreamTask[] {
    return [...this.tasks.values()].filter((t) => t.sessionId === sessionId);
  }

  /** Upstream tasks made for one relay task under any of its SessionIds (the task id, then `<id>-r<n>`). */
  ofTask(relayTaskId: string): UpstreamTask[] {
    return [...this.tasks.values()].filter((t) => t.sessionId === relayTaskId || t.sessionId.startsWith(`${relayTaskId}-r`));
  }

  /** How often the completion event of a task was handed out by PullEvents. */
  eventDeliveries(taskId: string): number {
    for (const state of this.accounts.values()) {
      const event = state.events.find((e) => e.taskId === taskId);
      if (event) return event.deliveries;
    }
    return 0;
  }

  /** DescribeTasks answers empty for the next `n` calls of this account. */
  hideListings(secretId: string, n: number): void {
    this.accounts.get(secretId)!.hiddenListings = n;
  }

  /** Ends a task now (the test plays the upstream). */
  finish(taskId: string, result: TaskResult = { kind: 'success' }): void {
    const task = this.tasks.get(taskId);
    if (!task || task.status === 'FINISH' || task.status === 'ABORTED') return;
    if (task.status === 'WAITING') task.beganAt = Date.now();
    this.end(task, result.kind === 'aborted' ? 'ABORTED' : 'FINISH', result);
  }

  async close(): Promise<void> {
    for (const timer of this.timers) clearTimeout(timer);
    for (const state of this.accounts.values()) for (const wake of state.pullers) wake();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  // ------------------------------------------------------------------------------------------------- plumbing

  private later(ms: number, fn: () => void): void {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      fn();
    }, ms);
    this.timers.add(timer);
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    if (req.method === 'GET' && req.url?.startsWith('/outputs/')) {
      this.outputRequests.push({ path: req.url, host: String(req.headers.host ?? '') });
      if (this.rawOutput(req, res)) return;
      await this.outputsHeld;
      const status = this.outputStatus();
      if (status !== 200) res.writeHead(status, { 'content-type': 'text/plain' }).end('not now');
      else res.writeHead(200, { 'content-type': 'image/png', 'content-length': this.png.length }).end(this.png);
      return;
    }
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks);
    const requestId = randomUUID();
    const send = (response: object) => {
      if (res.destroyed) return;
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ Response: { ...response, RequestId: requestId } }));
    };
    const action = String(req.headers['x-tc-action'] ?? '');
    const language = req.headers['x-tc-language'] as string | undefined;
    const verdict = verifyTc3({ method: req.method ?? '', path: req.url ?? '', headers: req.headers, body }, (id) => this.accounts.get(id)?.account.secretKey);
    if (!verdict.ok) {
      this.calls.push({ action, error: verdict.code, language });
      send({ Error: { Code: verdict.code, Message: verdict.message } });
      return;
    }
    const state = this.accounts.get(verdict.secretId)!;
    let params: Record<string, any>;
    try {
      params = JSON.parse(body.toString('utf8')) as Record<string, any>;
    } catch {
      send({ Error: { Code: 'InvalidParameter', Message: 'body is not JSON' } });
      return;
    }
    const call = { action, secretId: verdict.secretId, language } as { action: string; secretId: string; error?: string; language?: string };
    this.calls.push(call);
    if (this.rawAnswer(action, params, res)) return;
    const fail = (code: string, message: string) => {
      call.error = code;
      send({ Error: { Code: code, Message: message } });
    };
    if (params.SubAppId !== undefined && params.SubAppId !== state.account.subAppId) {
      fail('InvalidParameterValue.SubAppId', `SubAppId ${params.SubAppId} does not belong to this account`);
      return;
    }
    switch (action) {
      case 'CreateAigcImageTask':
        return this.create(state, params, send, fail);
      case 'DescribeTaskDetail':
        return this.describe(state, params, send, fail);
      case 'DescribeTasks':
        if (this.listingFails(state.account)) return fail('InternalError', 'the task listing failed');
        return this.list(state, params, send);
      case 'ManageTask':
        return this.manage(state, params, send, fail);
      case 'PullEvents':
        return this.pull(state, send);
      case 'ConfirmEvents':
        return this.confirmEvents(state, params, send, fail);
      default:
        fail('InvalidAction', `action ${action} is not served here`);
    }
  }

  // ------------------------------------------------------------------------------------------------- actions

  private async create(state: AccountState, p: Record<string, any>, send: (r: object) => void, fail: (c: string, m: string) => void) {
    if (!['GG', 'Qwen', 'Hunyuan', 'OG', 'Kling', 'Vidu'].includes(p.ModelName)) return fail('InvalidParameterValue.ModelName', `unknown ModelName ${p.ModelName}`);
    if (typeof p.ModelVersion !== 'string') return fail('MissingParameter', 'ModelVersion is required');
    const refusal = refusalOfCreate(p);
    if (refusal) return fail(...refusal);
    const sessionId = typeof p.SessionId === 'string' ? p.SessionId : '';
    if (sessionId && state.refusedSessions.has(sessionId)) return fail('InvalidParameterValue.SessionId', 'SessionId has been used in the last 3 days');
    const outcome = this.onCreate(p, state.account);
    if (outcome.kind === 'refuse' || outcome.kind === 'refuse-late') {
      if (sessionId && this.options.refusedSessionsCount) state.refusedSessions.add(sessionId);
      if (outcome.kind === 'refuse-late') return this.later(outcome.delayMs, () => fail(outcome.code, outcome.message));
      return fail(outcome.code, outcome.message);
    }
    if (outcome.kind === 'drop') return this.later(outcome.delayMs, () => fail('InternalError', 'lost'));
    if (sessionId && this.tasksOf(state.account.secretId).some((t) => t.sessionId === sessionId)) {
      return fail('InvalidParameterValue.SessionId', 'SessionId has been used in the last 3 days');
    }
    const plan = outcome.plan ?? {};
    const task: UpstreamTask = {
      taskId: `1500${String(this.tasks.size + 1).padStart(6, '0')}-AigcImage-${randomUUID().slice(0, 8)}`,
      account: state.account,
      request: p,
      sessionId,
      createdAt: Date.now(),
      status: 'WAITING',
      plan,
      polls: 0,
      waitingLeft: plan.waitingPolls ?? 0,
      processingLeft: plan.processingPolls ?? 1,
    };
    this.tasks.set(task.taskId, task);
    state.created++;
    state.inFlight++;
    state.maxInFlight = Math.max(state.maxInFlight, state.inFlight);
    if (task.waitingLeft === 0) this.begin(task);
    if (plan.finishAfterMs !== undefined) this.later(plan.finishAfterMs, () => this.finish(task.taskId, plan.result));
    if (plan.fetchInputs) {
      task.inputStatuses = [];
      for (const info of (p.FileInfos ?? []) as Array<{ Type: string; Url?: string }>) {
        if (info.Type !== 'Url' || !info.Url) continue;
        const response = await fetch(info.Url);
        await response.arrayBuffer();
        task.inputStatuses.push(response.status);
      }
    }
    if (outcome.kind === 'accept-late') this.later(outcome.delayMs, () => send({ TaskId: task.taskId }));
    else send({ TaskId: task.taskId });
  }

  private describe(state: AccountState, p: Record<string, any>, send: (r: object) => void, fail: (c: string, m: string) => void) {
    const task = this.tasks.get(String(p.TaskId));
    if (!task || task.account !== state.account) return fail('InvalidParameterValue.TaskId', `task ${p.TaskId} does not exist`);
    task.polls++;
    if (task.status === 'WAITING' && task.waitingLeft !== Infinity) {
      if (task.waitingLeft-- <= 1) this.begin(task);
    } else if (task.status === 'PROCESSING' && task.processingLeft !== Infinity) {
      if (task.processingLeft-- <= 1) this.end(task, task.plan.result?.kind === 'aborted' ? 'ABORTED' : 'FINISH', task.plan.result ?? { kind: 'success' });
    }
    send(this.detail(task));
  }

  private list(state: AccountState, p: Record<string, any>, send: (r: object) => void) {
    if (state.hiddenListings > 0) {
      state.hiddenListings--;
      return send({ TaskSet: [], ScrollToken: '' });
    }
    const after = p.CreateTime?.After ? Date.parse(p.CreateTime.After) : -Infinity;
    const before = p.CreateTime?.Before ? Date.parse(p.CreateTime.Before) : Infinity;
    const all = this.tasksOf(state.account.secretId).filter((t) => t.createdAt >= after && t.createdAt < before);
    // Sort by CreateTime as asked; unsorted, the listing is in no promised order (here: the order tasks were made).
    if (p.Sort?.Field === 'CreateTime') all.sort((a, b) => (a.createdAt - b.createdAt) * (p.Sort.Order === 'Desc' ? -1 : 1));
    const offset = Number(p.ScrollToken || 0);
    const limit = Math.min(100, Number(p.Limit ?? 10));
    const page = all.slice(offset, offset + limit);
    send({
      TaskSet: page.map((t) => ({
        TaskId: t.taskId,
        TaskType: 'AigcImageTask',
        Status: t.status,
        CreateTime: new Date(t.createdAt).toISOString(),
        SessionId: t.sessionId,
        SessionContext: t.request.SessionContext ?? '',
      })),
      ScrollToken: offset + limit < all.length ? String(offset + limit) : '',
    });
  }

  private manage(state: AccountState, p: Record<string, any>, send: (r: object) => void, fail: (c: string, m: string) => void) {
    const task = this.tasks.get(String(p.TaskId));
    if (!task || task.account !== state.account) return fail('InvalidParameterValue.TaskId', `task ${p.TaskId} does not exist`);
    if (p.OperationType !== 'Abort') return fail('InvalidParameterValue.OperationType', 'only Abort');
    if (task.status !== 'WAITING') return fail('FailedOperation.InvalidTaskStatus', `task is ${task.status}; only WAITING tasks can be aborted`);
    this.end(task, 'ABORTED', { kind: 'aborted' });
    send({});
  }

  private pull(state: AccountState, send: (r: object) => void) {
    const waitMs = this.options.pullWaitMs ?? 1000;
    const deadline = Date.now() + waitMs;
    const attempt = (): boolean => {
      const now = Date.now();
      const ready = state.events.filter((e) => e.confirmedAt === undefined && e.leasedUntil <= now).slice(0, 16);
      if (ready.length === 0 && now < deadline) return false;
      for (const e of ready) {
        e.deliveries++;
        e.handle = randomUUID();
        e.leasedUntil = now + (this.options.eventLeaseMs ?? 30_000);
      }
      send({
        EventSet: ready.map((e) => ({
          EventHandle: e.handle,
          EventType: 'AigcImageTaskComplete',
          AigcImageCompleteEvent: this.detail(this.tasks.get(e.taskId)!).AigcImageTask,
        })),
      });
      return true;
    };
    if (attempt()) return;
    const wake = () => {
      if (attempt()) {
        state.pullers.delete(wake);
        clearTimeout(timer);
      }
    };
    const timer = setTimeout(() => {
      state.pullers.delete(wake);
      send({ EventSet: [] });
    }, waitMs);
    this.timers.add(timer);
    state.pullers.add(wake);
  }

  /**
   * Tencent: at most 16 handles a call, and a handle is valid for 30 s after the pull that gave it out ("the validity
   * period of waiting for confirmation is 30 seconds; past it, a parameter error is reported"). Which of a call's
   * handles then count is not documented: here a stale or unknown handle fails the whole call, the harder case.
   */
  private confirmEvents(state: AccountState, p: Record<string, any>, send: (r: object) => void, fail: (c: string, m: string) => void) {
    const handles = (p.EventHandles ?? []) as string[];
    if (handles.length === 0 || handles.length > 16) return fail('InvalidParameter', `EventHandles: 1 to 16 handles, not ${handles.length}`);
    const now = Date.now();
    const events = handles.map((handle) => state.events.find((e) => e.handle === handle && (e.confirmedAt !== undefined || e.leasedUntil > now)));
    const stale = handles.find((_, i) => events[i] === undefined);
    if (stale !== undefined) {
      this.staleConfirms.push(stale);
      return fail('InvalidParameter', `EventHandle ${stale} is unknown or past its 30-second confirmation window`);
    }
    for (const event of events) {
      if (!event || event.confirmedAt !== undefined) continue;
      event.confirmedAt = now;
      this.confirmed.push({ handle: event.handle, taskId: event.taskId, at: event.confirmedAt });
    }
    send({});
  }

  // ------------------------------------------------------------------------------------------------- task life

  private begin(task: UpstreamTask): void {
    if (task.status !== 'WAITING') return;
    task.status = 'PROCESSING';
    task.beganAt = Date.now();
  }

  private end(task: UpstreamTask, status: 'FINISH' | 'ABORTED', result: TaskResult): void {
    if (task.status === 'FINISH' || task.status === 'ABORTED') return;
    task.status = status;
    task.result = result;
    task.finishedAt = Date.now();
    task.finishedMark = performance.now();
    const state = this.accounts.get(task.account.secretId)!;
    state.inFlight--;
    if (status === 'FINISH' && (this.options.eventsFor?.(task.account) ?? true)) {
      state.events.push({ taskId: task.taskId, handle: '', leasedUntil: 0, deliveries: 0 });
      for (const wake of [...state.pullers]) wake();
    }
  }

  private detail(task: UpstreamTask) {
    const base = this.baseDetail(task);
    return this.rewriteDetail ? { ...base, AigcImageTask: this.rewriteDetail(base.AigcImageTask, task) } : base;
  }

  private baseDetail(task: UpstreamTask) {
    const result = task.result;
    const failed = result?.kind === 'error';
    const images = result?.kind === 'success' ? (result.images ?? 1) : 0;
    const iso = (ms: number | undefined) => (ms === undefined ? '' : new Date(ms).toISOString());
    return {
      TaskType: 'AigcImageTask',
      Status: task.status,
      CreateTime: iso(task.createdAt),
      BeginProcessTime: iso(task.beganAt),
      FinishTime: iso(task.finishedAt),
      AigcImageTask: {
        TaskId: task.taskId,
        Status: task.status === 'FINISH' ? 'FINISH' : 'PROCESSING',
        ErrCode: failed ? result.errCode : 0,
        ErrCodeExt: failed ? result.errCodeExt : '',
        Message: failed ? result.message : '',
        Progress: task.status === 'FINISH' ? 100 : task.status === 'PROCESSING' ? Math.min(90, 10 * task.polls) : 0,
        Input: {
          ModelName: task.request.ModelName,
          ModelVersion: task.request.ModelVersion,
          Prompt: task.request.Prompt ?? '',
          OutputConfig: task.request.OutputConfig ?? {},
        },
        Output: {
          FileInfos: Array.from({ length: images }, (_, i) => ({
            StorageMode: task.request.OutputConfig?.StorageMode ?? 'Temporary',
            FileType: 'png',
            FileUrl: this.outputUrl?.(task, i) ?? `${this.url}/outputs/${task.taskId}/${i}.png`,
            FileId: '',
          })),
        },
        SessionId: task.sessionId,
        SessionContext: task.request.SessionContext ?? '',
      },
    };
  }
}
