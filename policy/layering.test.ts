// The house reads one way: operator -> policy <- proxy (both also import crds/ and lib/). Checked
// on the source, so an import across the line fails here rather than in review.
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(join(root, dir), { withFileTypes: true })) {
    const path = join(dir, e.name);
    if (e.isDirectory()) out.push(...sources(path));
    else if (e.name.endsWith('.ts')) out.push(path);
  }
  return out;
}

/** The folders (`depth` path segments deep, from the root) a file imports from; relative imports only. */
function importedFolders(file: string, depth = 1): Set<string> {
  const text = readFileSync(join(root, file), 'utf8');
  const folders = new Set<string>();
  for (const m of text.matchAll(/(?:from|import)\s*\(?\s*'(\.{1,2}\/[^']+)'/g)) {
    const target = relative(root, resolve(join(root, file, '..'), m[1]!));
    folders.add(target.split('/').slice(0, depth).join('/'));
  }
  return folders;
}

describe('layering', () => {
  it.each([
    ['operator', ['proxy', 'cli']],
    ['policy', ['proxy', 'operator', 'cli']],
    ['lib', ['proxy', 'operator', 'policy', 'cli']],
    ['crds', ['proxy', 'operator', 'cli']],
    ['proxy', ['operator', 'cli']],
  ])('%s/ imports nothing from %j', (dir, forbidden) => {
    const offending: string[] = [];
    for (const file of sources(dir)) {
      // A contract test may import both sides of the contract it checks.
      if (file === 'policy/reports.test.ts' || file === 'policy/layering.test.ts') continue;
      for (const f of importedFolders(file)) if (forbidden.includes(f)) offending.push(`${file} -> ${f}/`);
    }
    expect(offending).toEqual([]);
  });

  // Inside the proxy: ingest -> codec -> pipeline (stages) -> forward/queue, stats beside. Nothing in
  // the pipeline knows HTTP, and nothing in codec, forward or queue knows policies.
  it.each([
    [
      'proxy/pipeline',
      [
        'proxy/ingest',
        'proxy/forward',
        'proxy/queue',
        'proxy/web',
        'proxy/auth',
        'proxy/server.js',
        'proxy/stats',
      ],
    ],
    ['proxy/codec', ['proxy/pipeline', 'proxy/ingest', 'proxy/forward', 'proxy/queue', 'proxy/stats']],
    ['proxy/forward', ['proxy/pipeline']],
    ['proxy/queue', ['proxy/pipeline']],
  ])('%s/ imports nothing from %j', (dir, forbidden) => {
    const offending: string[] = [];
    for (const file of sources(dir)) {
      if (file.endsWith('.test.ts')) continue;
      for (const f of importedFolders(file, 2)) if (forbidden.includes(f)) offending.push(`${file} -> ${f}`);
    }
    expect(offending).toEqual([]);
  });
});
