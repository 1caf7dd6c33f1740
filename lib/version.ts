import { readFileSync } from 'node:fs';

/** The package version, read from package.json at start-up (two levels up in both src and dist). */
export function readVersion(): string {
  for (const rel of ['../package.json', '../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as {
        name?: string;
        version?: string;
      };
      if (pkg.name === 'cardinal' && pkg.version) return pkg.version;
    } catch {
      // Try the next candidate.
    }
  }
  return 'unknown';
}
