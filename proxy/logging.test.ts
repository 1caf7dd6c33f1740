import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger, logfmt } from './logging.js';

describe('logfmt', () => {
  it('writes key=value, quoting what needs it, and a multi-line message as indented text', () => {
    const line = JSON.stringify({
      level: 60,
      time: Date.UTC(2026, 11, 1),
      pid: 1,
      hostname: 'h',
      component: 'proxy',
      path: '/etc/cardinal',
      msg: 'configuration rejected:\na.yaml:3:5: spec.mode: x\nb.yaml:1:1: y',
    });
    expect(logfmt(line)).toBe(
      'ts=2026-12-01T00:00:00.000Z level=fatal msg="configuration rejected:" component=proxy path=/etc/cardinal\n' +
        '    a.yaml:3:5: spec.mode: x\n    b.yaml:1:1: y\n',
    );
  });

  it('a logger in logfmt writes through the same redaction and levels as json', () => {
    const lines: string[] = [];
    const out = new Writable({
      write(chunk, _enc, done) {
        lines.push(String(chunk));
        done();
      },
    });
    const log = createLogger('logfmt', { level: 'info', redact: ['token'] }, out);
    log.debug('hidden');
    log.warn({ token: 'secret', n: 3, err: new Error('boom') }, 'retrying');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^ts=\S+ level=warn msg=retrying token=\[Redacted\] n=3 err=boom\n$/);
  });
});
