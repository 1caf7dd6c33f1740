// What a person sees when the real proxy binary cannot start: a flag typo gets one line and a
// suggestion, a broken configuration gets every problem of every file at its line and column,
// as readable lines with --log.format logfmt and as one JSON record otherwise.

import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PROXY_MAIN } from '../framework/index.js';

function proxy(args: string[]): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [PROXY_MAIN, '--listen', '127.0.0.1:0', ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => {
      out += String(d);
    });
    child.stderr.on('data', (d) => {
      err += String(d);
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, out, err }));
  });
}

const BROKEN = {
  'a.yaml': `apiVersion: cardinal.dev/v1alpha1
kind: MetricPolicy
metadata:
  name: a
spec:
  mode: dryrun
  drop:
    - "(debug_.*"
`,
  'b.yaml': 'apiVersion: cardinal.dev/v1alpha1\nkind: MetricPolicy\nmetadata: {name: b\n',
};

describe('cardinal-proxy start-up errors', () => {
  it('--version prints the version; a flag typo gets a suggestion and a short usage line', async () => {
    const v = await proxy(['--version']);
    expect(v.code).toBe(0);
    expect(v.out).toMatch(/^cardinal-proxy \d+\.\d+\.\d+ \(node v\d+/);
    const typo = await proxy(['--upstrem', 'http://127.0.0.1:1/api/v1/write']);
    expect(typo.code).toBe(2);
    expect(typo.err).toBe(
      'cardinal-proxy: unknown flag --upstrem; did you mean --upstream?\nUsage: cardinal-proxy [flags]; cardinal-proxy --help lists every flag.\n',
    );
  });

  it('a broken configuration: every file, line and column, readable in logfmt and one JSON record otherwise', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cardinal-broken-'));
    for (const [name, text] of Object.entries(BROKEN)) writeFileSync(join(dir, name), text);
    const problems = [
      `${join(dir, 'a.yaml')}:6:9: spec.mode: must be one of enforce, dryRun, got "dryrun"; did you mean "dryRun"?`,
      `${join(dir, 'b.yaml')}:4:1: Flow map in block collection must be sufficiently indented and end with a }`,
    ];

    const text = await proxy(['--config', dir, '--log.format', 'logfmt']);
    expect(text.code).toBe(1);
    const lines = text.out.split('\n');
    const fatal = lines.findIndex((l) => l.includes('level=fatal'));
    expect(lines[fatal]).toMatch(/^ts=\S+ level=fatal msg="configuration rejected:" component=proxy path=/);
    expect(lines.slice(fatal + 1, fatal + 1 + problems.length)).toEqual(problems.map((p) => `    ${p}`));
    // A spec with structural problems is not checked further: its regex waits for the next run.
    expect(text.out).not.toContain('spec.drop');

    const json = await proxy(['--config', dir]);
    expect(json.code).toBe(1);
    const record = JSON.parse(json.out.split('\n').find((l) => l.includes('"level":60'))!) as { msg: string };
    expect(record.msg).toBe(`configuration rejected:\n${problems.join('\n')}`);
  });
});
