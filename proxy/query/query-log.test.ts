import { appendFileSync, mkdtempSync, renameSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { MAX_LINE_BYTES, parseQueryLogLine, QueryLogTailer } from './query-log.js';

const line = (group: string, query: string) =>
  `${JSON.stringify({ params: { query, start: '', end: '', step: 0 }, ruleGroup: { file: '/r.yml', name: group }, ts: '' })}\n`;

function tailer(path: string, start?: { path: string; ino: number; offset: number }) {
  const lines: string[] = [];
  let tooLong = 0;
  const t = new QueryLogTailer({
    path,
    pollMs: 1_000_000,
    start,
    onLine: (l) => lines.push(l),
    onTooLong: () => tooLong++,
    logger: pino({ level: 'silent' }),
  });
  return { t, lines, tooLong: () => tooLong };
}

describe('parseQueryLogLine', () => {
  it.each([
    [line('g', 'up').trim(), { file: '/r.yml', group: 'g', query: 'up' }],
    ['{"httpRequest":{"path":"/api/v1/query"},"params":{"query":"up"}}', 'other'],
    ['not json', 'invalid'],
    ['{"params":{}}', 'invalid'],
  ])('%s', (text, want) => expect(parseQueryLogLine(text)).toEqual(want));
});

describe('QueryLogTailer', () => {
  it('starts at the end of a file it never saw, then reads what is appended, line by line', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'qlog-')), 'query.log');
    writeFileSync(path, line('old', 'a'));
    const { t, lines } = tailer(path);
    await t.poll();
    expect(lines).toEqual([]);
    appendFileSync(path, line('g', 'b') + line('g', 'c').slice(0, 10));
    await t.poll();
    expect(lines.map((l) => parseQueryLogLine(l))).toEqual([{ file: '/r.yml', group: 'g', query: 'b' }]);
    // The half line is read again from its start after a restart, and completed now.
    const at = t.position();
    appendFileSync(path, line('g', 'c').slice(10));
    await t.poll();
    expect(lines).toHaveLength(2);
    await t.close();
    const again = tailer(path, at);
    await again.t.poll();
    expect(again.lines.map((l) => (parseQueryLogLine(l) as { query: string }).query)).toEqual(['c']);
    await again.t.close();
  });

  it('follows a rotation: the old file to its end, then the new one from its start', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'qlog-')), 'query.log');
    writeFileSync(path, '');
    const { t, lines } = tailer(path);
    await t.poll();
    appendFileSync(path, line('g', 'before'));
    renameSync(path, `${path}.1`);
    appendFileSync(`${path}.1`, line('g', 'late'));
    writeFileSync(path, line('g', 'new'));
    await t.poll();
    expect(lines.map((l) => (parseQueryLogLine(l) as { query: string }).query)).toEqual([
      'before',
      'late',
      'new',
    ]);
    await t.close();
  });

  it('reads a truncated file from its start', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'qlog-')), 'query.log');
    writeFileSync(path, '');
    const { t, lines } = tailer(path);
    await t.poll();
    appendFileSync(path, line('g', 'one') + line('g', 'two'));
    await t.poll();
    truncateSync(path, 0);
    appendFileSync(path, line('g', 'three'));
    await t.poll();
    expect(lines.map((l) => (parseQueryLogLine(l) as { query: string }).query)).toEqual([
      'one',
      'two',
      'three',
    ]);
    await t.close();
  });

  it('skips a line longer than the bound and goes on after it', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'qlog-')), 'query.log');
    writeFileSync(path, '');
    const { t, lines, tooLong } = tailer(path);
    await t.poll();
    appendFileSync(path, `${'x'.repeat(MAX_LINE_BYTES + 10)}\n${line('g', 'after')}`);
    await t.poll();
    expect(tooLong()).toBe(1);
    expect(lines.map((l) => (parseQueryLogLine(l) as { query: string }).query)).toEqual(['after']);
    await t.close();
  });

  it('waits for a file that does not exist yet, and reads it from its start', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'qlog-')), 'query.log');
    const { t, lines } = tailer(path);
    await t.poll();
    expect(t.position()).toBeUndefined();
    writeFileSync(path, line('g', 'first'));
    await t.poll();
    appendFileSync(path, line('g', 'second'));
    await t.poll();
    expect(lines.map((l) => (parseQueryLogLine(l) as { query: string }).query)).toEqual(['first', 'second']);
    await t.close();
  });
});
