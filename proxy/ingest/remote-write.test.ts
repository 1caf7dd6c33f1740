// prepareRequestShared with a stage plugin whose failure mode refuses. Every series of a request is
// judged by the plugin (or taken from its cached verdict) before the shared limit store is asked:
// while a request waits for the store other requests run and push verdicts out of the cache, and
// a tiny cache loses them within one request, yet no series is forwarded without the plugin's
// say, and a refusal is a 503 with Retry-After (never a 2xx) with nothing forwarded.

import { Type } from '@sinclair/typebox';
import { describe, expect, it } from 'vitest';
import { decodeWriteRequestV1, encodeWriteRequestV1 } from '../codec/proto.js';
import { snappyDecode, snappyEncode } from '../codec/snappy.js';
import { CardinalError } from '../errors.js';
import { type AdmissionCheck, MemoryLimitStore } from '../limits/store.js';
import { compilePipeline } from '../pipeline/compile.js';
import { PolicyEngine } from '../pipeline/engine.js';
import { PluginGuard } from '../pipeline/plugins/guard.js';
import { checkPlugin } from '../pipeline/plugins/load.js';
import { seriesOf } from '../pipeline/plugins/testing.js';
import { prepareRequestShared } from './remote-write.js';

/** A store whose answers wait for the test to open the gate. */
class GatedStore extends MemoryLimitStore {
  gate: Promise<void> = Promise.resolve();
  override async admit(checks: readonly AdmissionCheck[], nowMs: number) {
    await this.gate;
    return super.admit(checks, nowMs);
  }
}

function rig(verdictCacheSize = 4) {
  const state = { broken: false };
  // Marks series checked="yes"; refuses requests while its backend is "broken", for metric x.
  const flaky = checkPlugin('flaky.mjs', {
    apiVersion: 1,
    kind: 'label',
    name: 'flaky',
    schema: Type.Object({}),
    reasons: [],
    onError: 'refuse',
    compile: () => ({}),
    apply(
      _c: unknown,
      step: {
        labels: readonly { name: string; value: string }[];
        rewrite(l: { name: string; value: string }[]): void;
      },
    ) {
      if (state.broken && step.labels.some((l) => l.name === '__name__' && l.value === 'x'))
        throw new Error('backend down');
      step.rewrite([...step.labels, { name: 'checked', value: 'yes' }]);
    },
  });
  const pipeline = compilePipeline(
    [
      {
        name: 'p',
        namespace: 'ns',
        spec: { limits: { perMetric: [{ metric: 'm', maxSeries: 100 }] }, stages: [{ name: 'flaky' }] },
      },
    ],
    undefined,
    { byName: new Map([['flaky', flaky]]), guard: new PluginGuard({ timeoutMs: 1000 }) },
  );
  const store = new GatedStore();
  const engine = new PolicyEngine(
    pipeline,
    { verdictCacheSize, maxTrackedSeries: 1000, maxTrackedLabelValues: 1000, maxMetricNames: 100 },
    { slot() {}, forwarded: () => false, newSeries() {} },
    { store, replicas: 1 },
  );
  const prepare = (names: readonly Record<string, string>[]) =>
    prepareRequestShared(
      '1.0',
      snappyEncode(
        encodeWriteRequestV1({ timeseries: names.map((l) => seriesOf(l, 1, Date.now())), metadata: [] }),
      ),
      {
        maxDecodedBytes: 1 << 20,
        upstreamProtocol: 'same',
        scratch: undefined,
        engine,
        tenant: undefined,
        nowMs: Date.now(),
      },
    );
  return { state, store, prepare };
}

/** The forwarded series as `name{k=v,...}`, sorted. */
function forwarded(r: { prepared: { body: Uint8Array | undefined } }): string[] {
  const body = r.prepared.body;
  if (body === undefined) return [];
  return decodeWriteRequestV1(snappyDecode(Buffer.from(body), 1 << 20))
    .timeseries.map((t) => t.labels.map((l) => `${l.name}=${l.value}`).join(','))
    .sort();
}

describe('a refusing stage plugin on the remote-write path with a shared limit store', () => {
  it('decides every series before the store is asked: a cache emptied during the wait changes nothing', async () => {
    const { state, store, prepare } = rig();
    // x is judged once while the plugin works, and its verdict cached.
    prepare([{ __name__: 'x', job: 'a' }]);
    // A request whose first series needs the store: it waits, holding x behind it.
    let open = () => {};
    store.gate = new Promise((resolve) => {
      open = resolve;
    });
    const waiting = prepare([
      { __name__: 'm', id: '1' },
      { __name__: 'x', job: 'a' },
    ]);
    expect(waiting).toBeInstanceOf(Promise);
    // Meanwhile the plugin's backend breaks, and other traffic pushes x out of the verdict cache.
    state.broken = true;
    expect(() => prepare([{ __name__: 'x', job: 'b' }])).toThrow(CardinalError);
    prepare(Array.from({ length: 12 }, (_, i) => ({ __name__: 'y', i: String(i) })));
    open();
    // x carries the verdict the plugin gave before the store was asked: judged, not skipped.
    expect(forwarded(await waiting)).toEqual(['__name__=m,checked=yes,id=1', '__name__=x,checked=yes,job=a']);
  });

  it('refuses with 503 and Retry-After, before the store is asked, when the plugin fails', async () => {
    const { state, store, prepare } = rig();
    state.broken = true;
    let err: unknown;
    try {
      await prepare([
        { __name__: 'm', id: '1' },
        { __name__: 'x', job: 'a' },
      ]);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(CardinalError);
    expect(err).toMatchObject({ code: 'STAGE_FAILED', status: 503, retryAfterSeconds: 1 });
    expect((err as Error).message).toContain('stage plugin flaky failed (error)');
    expect(store.admits).toBe(0);
  });

  it('judges every series even when the verdict cache cannot hold one request', async () => {
    const { prepare } = rig(1);
    const series = Array.from({ length: 6 }, (_, i) => ({ __name__: 'z', i: String(i) }));
    prepare(series);
    // Now each series is a hit when the request starts and pushed out by the next one's verdict.
    const r = await prepare(series);
    expect(forwarded(r)).toEqual(series.map((l) => `__name__=z,checked=yes,i=${l.i}`));
  });
});
