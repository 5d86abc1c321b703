import { Webhook } from 'standardwebhooks';
import { describe, expect, it } from 'vitest';
import { requestFingerprint } from '../../src/app/idempotency';
import { secretsAt, signedHeaders } from '../../src/app/webhook-signature';
import { readIdempotencyKey, readPreferWait } from '../../src/domain/delivery';
import { DEFAULT_WEBHOOK_POLICY, nextStep } from '../../src/worker/webhook-dispatcher';

const HOUR = 3600_000;

/** Follows the schedule from a failed first attempt until it gives up; returns the attempt times. */
function schedule(random: () => number): number[] {
  const policy = { ...DEFAULT_WEBHOOK_POLICY, random };
  const times = [0];
  let attempts = 0;
  for (;;) {
    const step = nextStep(policy, { attempts, createdAt: 0 }, 503, times.at(-1)!);
    attempts++;
    if (step.state !== 'pending') return times;
    times.push(step.nextAttemptAt);
  }
}

describe('webhook retry schedule (default policy)', () => {
  for (const [name, random] of [['shortest jitter', () => 0], ['longest jitter', () => 0.999999]] as const) {
    it(`${name}: first retry within seconds, gaps growing to hours, trying for at least 24 h`, () => {
      const times = schedule(random);
      const gaps = times.slice(1).map((t, i) => t - times[i]!);
      expect(gaps[0]).toBeLessThanOrEqual(5_000);
      expect(gaps[0]).toBeGreaterThan(0);
      for (let i = 1; i < gaps.length; i++) expect(gaps[i]).toBeGreaterThanOrEqual(gaps[i - 1]!); // never shrinks
      expect(Math.max(...gaps)).toBeGreaterThanOrEqual(2 * HOUR);
      expect(times.at(-1)!).toBeGreaterThanOrEqual(24 * HOUR); // the last attempt is at least 24 h after the event
      expect(times.length).toBeLessThan(DEFAULT_WEBHOOK_POLICY.maxAttempts);
    });
  }

  it('2xx delivers, 410 stops, anything else retries', () => {
    const fresh = { attempts: 0, createdAt: 0 };
    expect(nextStep(DEFAULT_WEBHOOK_POLICY, fresh, 204, 0).state).toBe('delivered');
    expect(nextStep(DEFAULT_WEBHOOK_POLICY, fresh, 410, 0).state).toBe('gone');
    for (const status of [undefined, 301, 400, 404, 429, 500]) expect(nextStep(DEFAULT_WEBHOOK_POLICY, fresh, status, 0).state).toBe('pending');
  });
});

describe('webhook signature', () => {
  it('verifies with the standardwebhooks package, and fails for another secret, id, time or body', () => {
    const secret = `whsec_${Buffer.from('0123456789abcdef0123456789abcdef').toString('base64')}`;
    const other = `whsec_${Buffer.from('fedcba9876543210fedcba9876543210').toString('base64')}`;
    const body = JSON.stringify({ request_id: 'r1', outcome: 'succeeded', session_context: 'ünïcode ✓' });
    const now = Math.floor(Date.now() / 1000);
    const headers = { ...signedHeaders(secret, 'msg_r1', now, body) };
    expect(new Webhook(secret).verify(body, headers)).toEqual(JSON.parse(body));
    expect(() => new Webhook(other).verify(body, headers)).toThrow();
    expect(() => new Webhook(secret).verify(body, { ...headers, 'webhook-id': 'msg_r2' })).toThrow();
    expect(() => new Webhook(secret).verify(body, { ...headers, 'webhook-timestamp': String(now + 1) })).toThrow();
    expect(() => new Webhook(secret).verify(`${body} `, headers)).toThrow();
  });

  it('a rotated-out secret signs beside the new one until its time, and not from then on', () => {
    const account = { webhookSecret: 'whsec_new', previousWebhookSecret: { secret: 'whsec_old', until: 10_000 } };
    expect(secretsAt(account, 9_999)).toEqual(['whsec_new', 'whsec_old']);
    expect(secretsAt(account, 10_000)).toEqual(['whsec_new']);
    expect(secretsAt({ webhookSecret: 'whsec_new' }, 0)).toEqual(['whsec_new']);
    const signature = signedHeaders(['whsec_AAAA', 'whsec_BBBB'], 'msg_1', 1, '{}')['webhook-signature'];
    expect(signature.split(' ')).toEqual([signedHeaders('whsec_AAAA', 'msg_1', 1, '{}')['webhook-signature'], signedHeaders('whsec_BBBB', 'msg_1', 1, '{}')['webhook-signature']]);
  });
});

describe('header rules', () => {
  it('Prefer: wait', () => {
    expect(readPreferWait(undefined)).toBeUndefined();
    expect(readPreferWait('respond-async')).toBeUndefined();
    expect(readPreferWait('wait=0')).toBe(0);
    expect(readPreferWait('respond-async, WAIT=60')).toBe(60);
    expect(readPreferWait('wait="15"; foo')).toBe(15);
    expect(readPreferWait('wait=61')).toBe(60); // as long as it can get
    expect(readPreferWait(`wait=${'9'.repeat(400)}`)).toBe(60);
    // RFC 7240 §2: what cannot be used is ignored, never an error; of a preference given twice only the first counts.
    for (const unusable of ['wait=', 'wait=abc', 'wait=1e1', 'wait=-1', 'wait=.5', 'wait=5s']) expect(readPreferWait(unusable), unusable).toBeUndefined();
    expect(readPreferWait('wait=1.5')).toBe(2); // rounded up: the client wants to wait
    expect(readPreferWait('wait=5, wait=6')).toBe(5);
    expect(readPreferWait(['wait=7', 'wait=6'])).toBe(7);
    expect(readPreferWait('wait=abc, wait=6')).toBeUndefined();
  });

  it('Idempotency-Key', () => {
    expect(readIdempotencyKey(undefined)).toBeUndefined();
    expect(readIdempotencyKey('a')).toBe('a');
    expect(readIdempotencyKey('x'.repeat(255))).toHaveLength(255);
    for (const bad of ['', 'x'.repeat(256), ' a', 'tab\there', 'caf\u00e9']) expect(() => readIdempotencyKey(bad), bad).toThrow(/^Idempotency-Key: /);
  });

  it('request fingerprints ignore key order, nothing else', () => {
    expect(requestFingerprint({ a: 1, b: [1, { c: 2, d: 3 }] })).toBe(requestFingerprint({ b: [1, { d: 3, c: 2 }], a: 1 }));
    expect(requestFingerprint({ a: 1 })).not.toBe(requestFingerprint({ a: '1' }));
    expect(requestFingerprint({ a: [1, 2] })).not.toBe(requestFingerprint({ a: [2, 1] }));
  });
});
