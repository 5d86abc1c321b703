import pg from 'pg';
import { checkIdentifier } from './database';

export interface ListenerOptions {
  readonly config: pg.ClientConfig;
  readonly channel: string;
  readonly onNotify: (payload: string) => void;
  /** Called after every (re)connection: notifications sent while disconnected were lost, so look again. */
  readonly onConnected: () => void;
  readonly onError: (err: unknown) => void;
  /** Delay before reconnecting after the connection broke; doubles up to 10 s. */
  readonly retryMs?: number;
}

/**
 * A dedicated connection that LISTENs for wake-ups. A pooled client cannot LISTEN (the pool hands it to others and
 * notifications would go to whoever holds it), so this one is owned here and reconnected with backoff when it
 * breaks. Notifications are best-effort by design: the queue also polls slowly, and looks again on reconnect.
 */
export class NotificationListener {
  private client: pg.Client | undefined;
  private stopped = false;
  private timer: NodeJS.Timeout | undefined;
  private delay: number;

  constructor(private readonly options: ListenerOptions) {
    this.delay = options.retryMs ?? 200;
  }

  /** Resolves once listening (the first connection must work: a relay that cannot LISTEN should not start). */
  async start(): Promise<void> {
    await this.connect();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    const client = this.client;
    this.client = undefined;
    await client?.end().catch(() => {});
  }

  private async connect(): Promise<void> {
    const client = new pg.Client(this.options.config);
    const broke = (err?: unknown) => {
      if (this.client !== client) return; // already handled, or stopped
      this.client = undefined;
      if (err) this.options.onError(err);
      client.end().catch(() => {});
      this.scheduleReconnect();
    };
    client.on('notification', (message) => {
      if (message.channel === this.options.channel && message.payload !== undefined) this.options.onNotify(message.payload);
    });
    client.on('error', broke);
    client.on('end', () => broke());
    try {
      await client.connect();
      await client.query(`LISTEN ${checkIdentifier(this.options.channel, 'channel')}`);
    } catch (err) {
      await client.end().catch(() => {});
      throw err;
    }
    if (this.stopped) {
      await client.end();
      return;
    }
    // Only now does a break of this connection schedule a reconnect (before, the caller's catch does).
    this.client = client;
    this.delay = this.options.retryMs ?? 200;
    this.options.onConnected();
  }

  private scheduleReconnect(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.connect().catch((err: unknown) => {
        this.options.onError(err);
        this.scheduleReconnect();
      });
    }, this.delay);
    this.timer.unref();
    this.delay = Math.min(this.delay * 2, 10_000);
  }
}
