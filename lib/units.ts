// Sizes as people write them. The README and the chart say "32 MiB"; flags accept exactly that.

const UNITS: Readonly<Record<string, number>> = {
  '': 1,
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
  k: 1e3,
  m: 1e6,
  g: 1e9,
  t: 1e12,
  kib: 2 ** 10,
  mib: 2 ** 20,
  gib: 2 ** 30,
  tib: 2 ** 40,
  ki: 2 ** 10,
  mi: 2 ** 20,
  gi: 2 ** 30,
  ti: 2 ** 40,
};

/**
 * Parses a size in bytes: `33554432`, `32MiB`, `32 MiB`, `1.5GiB`, `4GB`, or Kubernetes' `512Mi`.
 * KiB, MiB, GiB and TiB (and Ki, Mi, Gi, Ti) are powers of 1024; KB, MB, GB and TB (and k, M, G, T)
 * powers of 1000. Units ignore case. The result must be a whole number of bytes above zero.
 */
export function parseSize(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text);
  const unit = m === null ? undefined : UNITS[m[2]!.toLowerCase()];
  if (m === null || unit === undefined) {
    throw new Error(`${JSON.stringify(text)} is not a size such as 32MiB, 512KiB, 4GB or 1048576`);
  }
  const bytes = Number(m[1]) * unit;
  if (!Number.isSafeInteger(bytes)) {
    throw new Error(`${JSON.stringify(text)} is not a whole number of bytes below 2^53`);
  }
  if (bytes <= 0) throw new Error(`${JSON.stringify(text)} must be more than zero bytes`);
  return bytes;
}

/** A size as people read it: the largest binary unit that divides it, `32MiB`, else bytes. */
export function formatSize(bytes: number): string {
  for (const [unit, factor] of [
    ['TiB', 2 ** 40],
    ['GiB', 2 ** 30],
    ['MiB', 2 ** 20],
    ['KiB', 2 ** 10],
  ] as const) {
    if (bytes >= factor && bytes % factor === 0) return `${bytes / factor}${unit}`;
  }
  return `${bytes}B`;
}
