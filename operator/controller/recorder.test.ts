import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import type { EventObject } from '../status/events.js';
import { EventRecorder, type EventSink } from './recorder.js';

const target = {
  apiVersion: 'cardinal.dev/v1alpha1',
  kind: 'MetricPolicy',
  metadata: { name: 'p', namespace: 'apps', uid: 'u-1' },
};
const degraded = { type: 'Warning', reason: 'Degraded', message: 'ProxiesUnreachable: down' } as const;

/** An Events API in memory; `gone` makes the next patch answer 404, as for an expired Event. */
function fakeSink() {
  const events = new Map<string, EventObject>();
  const calls: string[] = [];
  let gone = false;
  const sink: EventSink = {
    async createEvent(e) {
      calls.push(`create ${e.reason}`);
      events.set(e.metadata.name, structuredClone(e));
    },
    async patchEvent(_ns, name, patch) {
      calls.push(`patch ${patch.count}`);
      if (gone) {
        gone = false;
        events.delete(name);
        throw Object.assign(new Error('not found'), { code: 404 });
      }
      const e = events.get(name)!;
      e.count = patch.count;
      e.message = patch.message;
    },
  };
  return { sink, events, calls, expire: () => (gone = true) };
}

describe('EventRecorder', () => {
  it('writes in the background, counts repeats on the Event written before, and starts over when it expired', async () => {
    const { sink, events, calls, expire } = fakeSink();
    const written: string[] = [];
    const recorder = new EventRecorder({
      sink,
      identity: 'pod-1',
      qps: 1000,
      burst: 10,
      logger: pino({ level: 'silent' }),
      written: (reason) => written.push(reason),
    });
    recorder.record(target, degraded);
    recorder.record(target, degraded);
    await recorder.flush();
    expect(calls).toEqual(['create Degraded', 'patch 2']);
    expect([...events.values()].map((e) => [e.reason, e.count, e.involvedObject.uid])).toEqual([
      ['Degraded', 2, 'u-1'],
    ]);
    expire();
    recorder.record(target, degraded);
    await recorder.flush();
    expect(calls.slice(2)).toEqual(['patch 3', 'create Degraded']);
    expect(written).toEqual(['Degraded', 'Degraded', 'Degraded']);
    await recorder.close();
  });

  it('drops what waits beyond maxPending, and a failed write fails nothing else', async () => {
    const { sink, calls } = fakeSink();
    const failing: EventSink = {
      ...sink,
      createEvent: async (e) => {
        if (e.message === 'boom') throw new Error('refused');
        await sink.createEvent(e);
      },
    };
    const recorder = new EventRecorder({
      sink: failing,
      identity: 'pod-1',
      qps: 1000,
      burst: 10,
      logger: pino({ level: 'silent' }),
      maxPending: 2,
    });
    for (const message of ['boom', 'a', 'b', 'c']) recorder.record(target, { ...degraded, message });
    await recorder.flush();
    // 'boom' was taken at once and failed; 'a' and 'b' waited; 'c' found the queue full.
    expect(calls).toEqual(['create Degraded', 'create Degraded']);
    await recorder.close();
  });
});
