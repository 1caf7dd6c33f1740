// Memory-bounded cardinality tracking for the `limits` stage of a MetricPolicy
// (crds/metric-policy.ts: `perMetric`, `perLabel`, `perTenantMaxSeries`, `window`).
//
// Measured with cardinality.bench.ts (2026-11-22, 2-core machine, Node 20.20, 4096 buckets):
//   admit, known series:        ~48 ns with 10k tracked, ~78 ns with 1M tracked (cache misses)
//   admit, new series admitted: ~97 ns; refused over its limit: ~87 ns; refused, table full: ~132 ns
//   hashBytes of a 120-byte label set: ~69 ns
//   memory: 13.35 bytes per tracked series (heap + array buffers grown by a 1M-series tracker);
//   heap + array buffers 20.5 MiB with 1M tracked, the same after 5M distinct new series at once
//   (refused, table full) and after 5M more at a million a minute into a 1-minute window.
//
// The pieces, all long-lived and sized once at construction:
// - `hashBytes` / `hashString`: MurmurHash3 x86_32 over a byte range or over a string's UTF-8
//   bytes (the two agree), so the pipeline can hash a label set straight out of the request body.
// - `MetricInterner`: metric names to small integers, the bucket numbers the trackers count by.
// - `SeriesTracker`: an open-addressing hash table in typed arrays of (bucket, 32-bit hash) keys
//   with their last-seen second, per-bucket counts, expiry of keys older than the window, and a
//   hard capacity. One tracker serves one limit scope:
//     perMetric:          bucket = metric index,  hash = hash of the series' label set
//     perTenantMaxSeries: bucket = tenant index (a second MetricInterner), hash = label-set hash
//     perLabel:           bucket = metric index,  hash = hash of the label's value; one tracker per
//                         perLabel entry, so its count(bucket) is the distinct values of that
//                         label for that metric.
//
// Memory. A tracker holds exactly `slots = ceil(maxTrackedSeries / 0.75) + 1` slots of 10 bytes
// (Uint32 hash, Uint32 last-seen second, Uint16 bucket), so at most 13.4 bytes per tracked series
// at capacity, plus 4 bytes per bucket for the counts. It never grows: whatever the input, a
// tracker's memory is what `bytes` reports from the moment it is made.
//
// A full table. When `maxTrackedSeries` keys are active, a new key that finds no expired slot on
// its probe path is refused (ADMIT_TABLE_FULL) and counted in `fullRejections`; the caller treats
// it as over the limit. So a bomb larger than the table is contained: new series of every bucket
// wait for keys to expire while every admitted series keeps flowing. Size the table at least at
// the sum of the limits it enforces so that only a bomb can fill it.
//
// Identity and false positives. A key is (bucket, 32-bit hash); the hash is both the fingerprint
// and the source of the slot position, which is what lets deletion use backward shift rather than
// tombstones (so a table churned by a cardinality bomb never degrades). Two different series of
// one bucket with the same 32-bit hash are one key: a new series whose hash equals that of an
// active series of the same bucket is taken for it ("known") and flows even when the bucket is at
// its limit, without being counted. The chance for each new series is (active keys in its
// bucket) / 2^32: 2.3e-6 for a bucket of 10,000 series, 2.3e-4 for a tenant of 1,000,000. Such a
// series is never counted, so it cannot push any other series over a limit.
//
// Time resolution is one second: a key is active while
// `floor(nowMs / 1000) - floor(lastSeenMs / 1000) <= windowSeconds`. Expired keys are removed
// incrementally: each `admit` sweeps a few slots (`sweepPerAdmit`), `sweep` sweeps more on demand,
// and a new key takes over an expired slot it meets while probing. Until the sweep reaches an
// expired key it still counts towards its bucket, so `count` can lag expiry by one sweep cycle
// (slots / (sweepPerAdmit x admits per second) seconds, plus whatever `sweep` calls add).

/** MurmurHash3 x86_32 constants (Austin Appleby, SMHasher `MurmurHash3.cpp`). */
const C1 = 0xcc9e2d51;
const C2 = 0x1b873593;

/**
 * MurmurHash3 x86_32 of `buf[start..end)` with `seed`, as an unsigned 32-bit integer. Not
 * cryptographic: a sender who wants collisions can make them, which at worst lets one crafted
 * series flow as another one (see "Identity and false positives" above).
 */
export function hashBytes(buf: Uint8Array, start: number, end: number, seed: number): number {
  let h = seed | 0;
  let i = start;
  const blocksEnd = start + ((end - start) & ~3);
  for (; i < blocksEnd; i += 4) h = step(h, scramble(blockAt(buf, i)));
  if (end > i) h ^= scramble(tailAt(buf, i, end - i));
  return fmix(h ^ (end - start));
}

/**
 * `hashBytes` of `buf[start..end)` with two seeds at once, into `out[0]` and `out[1]`: the same
 * two numbers as two calls, with each 4-byte block read and mixed once (the block mix does not
 * depend on the seed). The engine keys its verdict cache by two such hashes of every series.
 */
export function hashBytesPair(
  buf: Uint8Array,
  start: number,
  end: number,
  seedA: number,
  seedB: number,
  out: Uint32Array,
): void {
  let a = seedA | 0;
  let b = seedB | 0;
  let i = start;
  const blocksEnd = start + ((end - start) & ~3);
  for (; i < blocksEnd; i += 4) {
    const k = scramble(blockAt(buf, i));
    a = step(a, k);
    b = step(b, k);
  }
  if (end > i) {
    const k = scramble(tailAt(buf, i, end - i));
    a ^= k;
    b ^= k;
  }
  out[0] = fmix(a ^ (end - start));
  out[1] = fmix(b ^ (end - start));
}

/** The little-endian 4-byte block at `buf[i]`. */
function blockAt(buf: Uint8Array, i: number): number {
  return buf[i]! | (buf[i + 1]! << 8) | (buf[i + 2]! << 16) | (buf[i + 3]! << 24);
}

/** The last 1 to 3 bytes at `buf[i]`, little-endian. */
function tailAt(buf: Uint8Array, i: number, rest: number): number {
  let k = buf[i]!;
  if (rest > 1) k |= buf[i + 1]! << 8;
  if (rest > 2) k |= buf[i + 2]! << 16;
  return k;
}

/** MurmurHash3's scrambling of a block before it joins the hash. */
function scramble(k: number): number {
  k = Math.imul(k, C1);
  k = (k << 15) | (k >>> 17);
  return Math.imul(k, C2);
}

/**
 * A running hash with one 32-bit value joined as MurmurHash3 joins a block (unsigned; no final
 * mix): the engine folds the hashes of a series' label symbols together with it.
 */
export function mixBlock(h: number, k: number): number {
  return step(h, scramble(k)) >>> 0;
}

/** MurmurHash3's block step: the running hash with one scrambled block joined. */
function step(h: number, k: number): number {
  h ^= k;
  h = (h << 13) | (h >>> 19);
  return (Math.imul(h, 5) + 0xe6546b64) | 0;
}

/**
 * `hashBytes` of the UTF-8 encoding of `s` (lone surrogates encode as U+FFFD, as TextEncoder
 * does), computed without encoding the string into a buffer.
 */
export function hashString(s: string, seed: number): number {
  let h = seed | 0;
  let k = 0; // pending bytes of the current 4-byte block, little-endian
  let shift = 0; // bit position of the next pending byte
  let length = 0;
  const n = s.length;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    // The UTF-8 bytes of this code point, packed little-endian into `bytes`.
    let bytes: number;
    let count: number;
    if (c < 0x80) {
      bytes = c;
      count = 1;
    } else if (c < 0x800) {
      bytes = 0xc0 | (c >>> 6) | ((0x80 | (c & 0x3f)) << 8);
      count = 2;
    } else if (c >= 0xd800 && c < 0xdc00 && i + 1 < n && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      const cp = 0x10000 + ((c - 0xd800) << 10) + (s.charCodeAt(i + 1) - 0xdc00);
      i++;
      bytes =
        0xf0 |
        (cp >>> 18) |
        ((0x80 | ((cp >>> 12) & 0x3f)) << 8) |
        ((0x80 | ((cp >>> 6) & 0x3f)) << 16) |
        ((0x80 | (cp & 0x3f)) << 24);
      count = 4;
    } else {
      const cp = c >= 0xd800 && c < 0xe000 ? 0xfffd : c;
      bytes = 0xe0 | (cp >>> 12) | ((0x80 | ((cp >>> 6) & 0x3f)) << 8) | ((0x80 | (cp & 0x3f)) << 16);
      count = 3;
    }
    length += count;
    for (let j = 0; j < count; j++) {
      k |= ((bytes >>> (j << 3)) & 0xff) << shift;
      shift += 8;
      if (shift === 32) {
        h = step(h, scramble(k));
        k = 0;
        shift = 0;
      }
    }
  }
  if (shift > 0) h ^= scramble(k);
  return fmix(h ^ length);
}

function fmix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** What `SeriesTracker.admit` decided. */
export type AdmitResult = 0 | 1 | 2 | 3;
/** The key was active: its last-seen time was refreshed. It always flows, whatever the limit. */
export const ADMIT_KNOWN = 0;
/** The key is new (or had expired) and its bucket was below the limit: it is now tracked and counted. */
export const ADMIT_NEW = 1;
/**
 * The key is new and its bucket is at the limit: it was not tracked. With onExceed dropNewSeries
 * the caller drops the series; with overflow it rewrites the offending label and admits the result.
 */
export const ADMIT_OVER_LIMIT = 2;
/**
 * The key is new, its bucket is below the limit, but the tracker holds `maxTrackedSeries` active
 * keys: it was not tracked. The caller must treat it exactly like ADMIT_OVER_LIMIT. This is what
 * contains a cardinality bomb larger than the table: new series stop flowing until keys expire,
 * while every series already tracked keeps flowing. Counted in `fullRejections`.
 */
export const ADMIT_TABLE_FULL = 3;

/** What `SeriesTracker.lookup` found. */
export type LookupResult = -1 | 0 | 1;
/** Not an active key. */
export const LOOKUP_UNKNOWN = -1;
/** An active key; its last-seen time was refreshed. */
export const LOOKUP_KNOWN = 0;
/** An active key whose activity is due to be told to the shared store. */
export const LOOKUP_DUE = 1;

/** Largest number of buckets: the bucket of each slot is stored in 16 bits. */
export const MAX_BUCKETS = 0x10000;
/** Slots per tracked series is 1 / MAX_LOAD; linear probing stays short below it. */
const MAX_LOAD = 0.75;
const SLOT_BYTES = 4 + 4 + 2;

export interface SeriesTrackerOptions {
  /**
   * The most keys the tracker ever holds. Its tables start small and double as keys arrive, up to
   * this; they never shrink.
   */
  readonly maxTrackedSeries: number;
  /** Buckets are 0..buckets-1; at most MAX_BUCKETS. Usually `MetricInterner.capacity`. */
  readonly buckets: number;
  /** A key is active while seen within this window (the policy's `limits.window`); at least 1000 ms. */
  readonly windowMs: number;
  /** Slots each `admit` call sweeps for expired keys. Default 2. */
  readonly sweepPerAdmit?: number;
  /**
   * With a shared limit store: `lookup` says when a known key's activity is due to be told to the
   * store again, at most once per this many seconds per key. Costs 4 bytes more per slot.
   */
  readonly refreshSeconds?: number;
}

/** Keys a tracker has room for before it first grows. */
const INITIAL_KEYS = 1024;
/** Buckets a tracker counts before it first grows its per-bucket counts. */
const INITIAL_BUCKETS = 64;

/**
 * Active keys per bucket within a window, in bounded memory. Hot path: `admit` allocates nothing
 * but when the table doubles (amortised: each key is moved O(1) times), and its cost is one
 * hash-table probe (a few adjacent slots) plus `sweepPerAdmit` slots of sweeping. The tables are
 * sized by what is held, not by the bound: a proxy with thousands of limits holds thousands of
 * trackers, most of them nearly empty.
 *
 * The caller must keep a bucket's meaning stable for the tracker's lifetime (a metric index from
 * one MetricInterner), and pass times in milliseconds since the Unix epoch, non-decreasing in the
 * common case; a clock that steps back only makes keys live longer.
 */
export class SeriesTracker {
  readonly maxTrackedSeries: number;
  readonly buckets: number;
  /** Slots of the table now; grows with the keys held. */
  slots: number;
  readonly windowSeconds: number;
  readonly sweepPerAdmit: number;
  /** Keys currently held (active, or expired but not yet swept). */
  size = 0;
  /** New keys refused because the table was full (ADMIT_TABLE_FULL), since construction. */
  fullRejections = 0;
  /** New keys refused because their bucket was at its limit (ADMIT_OVER_LIMIT), since construction. */
  overLimitRejections = 0;
  /** Keys removed because they expired, since construction. */
  expirations = 0;

  private hashes: Uint32Array;
  private lastSeen: Uint32Array;
  private bucketOf: Uint16Array;
  private counts: Int32Array;
  /** Second each key's activity was last told to the shared store; only with refreshSeconds. */
  private pushedAt: Uint32Array | undefined;
  /** Keys the table holds before it must grow: min(maxTrackedSeries, its load bound). */
  private room: number;
  private readonly refreshSeconds: number;
  private cursor = 0;

  constructor(options: SeriesTrackerOptions) {
    const { maxTrackedSeries, buckets, windowMs } = options;
    const sweepPerAdmit = options.sweepPerAdmit ?? 2;
    if (!Number.isInteger(maxTrackedSeries) || maxTrackedSeries < 1 || maxTrackedSeries > 2 ** 28)
      throw new RangeError(`maxTrackedSeries must be an integer in 1..2^28, got ${maxTrackedSeries}`);
    if (!Number.isInteger(buckets) || buckets < 1 || buckets > MAX_BUCKETS)
      throw new RangeError(`buckets must be an integer in 1..${MAX_BUCKETS}, got ${buckets}`);
    if (!(windowMs >= 1000)) throw new RangeError(`windowMs must be at least 1000, got ${windowMs}`);
    if (!Number.isInteger(sweepPerAdmit) || sweepPerAdmit < 0)
      throw new RangeError(`sweepPerAdmit must be a non-negative integer, got ${sweepPerAdmit}`);
    this.maxTrackedSeries = maxTrackedSeries;
    this.buckets = buckets;
    this.windowSeconds = Math.floor(windowMs / 1000);
    this.sweepPerAdmit = sweepPerAdmit;
    this.room = Math.min(maxTrackedSeries, INITIAL_KEYS);
    this.slots = slotsFor(this.room);
    this.hashes = new Uint32Array(this.slots);
    this.lastSeen = new Uint32Array(this.slots);
    this.bucketOf = new Uint16Array(this.slots);
    this.counts = new Int32Array(Math.min(buckets, INITIAL_BUCKETS));
    const refresh = options.refreshSeconds;
    if (refresh !== undefined && !(refresh >= 1))
      throw new RangeError(`refreshSeconds must be at least 1, got ${refresh}`);
    this.refreshSeconds = refresh ?? 0;
    this.pushedAt = refresh === undefined ? undefined : new Uint32Array(this.slots);
  }

  /** Bytes of typed-array memory the tracker holds now. */
  get bytes(): number {
    return this.slots * (SLOT_BYTES + (this.pushedAt === undefined ? 0 : 4)) + this.counts.length * 4;
  }

  /**
   * Looks up (bucket, hash) at `nowMs` without ever adding it: LOOKUP_UNKNOWN when it is not an
   * active key, otherwise its last-seen time is refreshed and the answer is LOOKUP_KNOWN, or
   * LOOKUP_DUE when the key's activity was last told to the shared store `refreshSeconds` ago or
   * more (it then counts as told: the caller must pass it on). Sweeps like `admit`. With
   * `refresh` false the key's last-seen time is left as it is, so it expires a window after it
   * was admitted however often it is looked up (a refusal remembered for a while).
   */
  lookup(bucket: number, hash: number, nowMs: number, refresh = true): LookupResult {
    const now = Math.floor(nowMs / 1000);
    this.sweepSlots(now, this.sweepPerAdmit);
    const fp = hash >>> 0 || 1;
    const hashes = this.hashes;
    let i = this.home(fp, bucket);
    for (;;) {
      const h = hashes[i]!;
      if (h === 0) return LOOKUP_UNKNOWN;
      if (h === fp && this.bucketOf[i] === bucket) {
        if (now - this.lastSeen[i]! > this.windowSeconds) return LOOKUP_UNKNOWN;
        if (!refresh) return LOOKUP_KNOWN;
        this.lastSeen[i] = now;
        const pushed = this.pushedAt;
        if (pushed !== undefined && now - pushed[i]! >= this.refreshSeconds) {
          pushed[i] = now;
          return LOOKUP_DUE;
        }
        return LOOKUP_KNOWN;
      }
      i = i + 1 === this.slots ? 0 : i + 1;
    }
  }

  /** Keys of `bucket` currently held: its active series (or label values), lagging expiry by at most one sweep cycle. */
  count(bucket: number): number {
    return this.counts[bucket] ?? 0;
  }

  /**
   * Looks up (bucket, hash) at `nowMs` and admits it if it is new and `bucket` holds fewer than
   * `limit` keys. `hash` is any 32-bit hash of the key (0 is folded onto 1). Pass `Infinity` as
   * `limit` to track without limiting (for example the series an overflow rewrite produced).
   */
  admit(bucket: number, hash: number, nowMs: number, limit: number): AdmitResult {
    if (!(bucket >>> 0 === bucket && bucket < this.buckets))
      throw new RangeError(`bucket ${bucket} out of range`);
    if (bucket >= this.counts.length) this.growCounts(bucket);
    const now = Math.floor(nowMs / 1000);
    const hashes = this.hashes;
    const lastSeen = this.lastSeen;
    const bucketOf = this.bucketOf;
    const slots = this.slots;
    const window = this.windowSeconds;
    // The incremental sweep, inlined: as sweepSlots, but visiting at most sweepPerAdmit slots.
    let c = this.cursor;
    for (let n = this.sweepPerAdmit; n > 0; n--) {
      if (hashes[c] !== 0 && now - lastSeen[c]! > window) {
        this.removeAt(c);
        this.expirations++;
      } else {
        c = c + 1 === slots ? 0 : c + 1;
      }
    }
    this.cursor = c;
    const fp = hash >>> 0 || 1;
    let i = this.home(fp, bucket);
    let reusable = -1;
    for (;;) {
      const h = hashes[i]!;
      if (h === 0) break;
      if (h === fp && bucketOf[i] === bucket) {
        if (now - lastSeen[i]! <= window) {
          lastSeen[i] = now;
          return ADMIT_KNOWN;
        }
        // Expired but not yet swept: a new series that happens to hold its old slot. It counts
        // once already, so it is admitted when the bucket holds fewer than `limit` others.
        if (this.counts[bucket]! - 1 < limit) {
          lastSeen[i] = now;
          if (this.pushedAt !== undefined) this.pushedAt[i] = now;
          return ADMIT_NEW;
        }
        this.removeAt(i);
        this.expirations++;
        this.overLimitRejections++;
        return ADMIT_OVER_LIMIT;
      }
      if (reusable < 0 && now - lastSeen[i]! > window) reusable = i;
      i = i + 1 === slots ? 0 : i + 1;
    }
    // An expired key of the same bucket met on the way is replaced below, which leaves the count as it is.
    if (this.counts[bucket]! >= limit && !(reusable >= 0 && bucketOf[reusable] === bucket)) {
      this.overLimitRejections++;
      return ADMIT_OVER_LIMIT;
    }
    if (reusable >= 0) {
      // Any slot between the home and the first empty slot is on this key's probe path, so an
      // expired key met on the way can be replaced in place; the table keeps its size.
      this.counts[bucketOf[reusable]!]!--;
      this.expirations++;
      i = reusable;
    } else if (this.size >= this.maxTrackedSeries) {
      this.fullRejections++;
      return ADMIT_TABLE_FULL;
    } else {
      if (this.size >= this.room) {
        this.grow();
        return this.insertNew(fp, bucket, now);
      }
      this.size++;
    }
    hashes[i] = fp;
    bucketOf[i] = bucket;
    lastSeen[i] = now;
    if (this.pushedAt !== undefined) this.pushedAt[i] = now;
    this.counts[bucket]!++;
    return ADMIT_NEW;
  }

  /**
   * Stops tracking (bucket, hash), for a key admitted by `admit` whose series a later stage
   * refused after all (so it does not hold a place under the limit). Returns whether it was held.
   */
  forget(bucket: number, hash: number): boolean {
    const fp = hash >>> 0 || 1;
    let i = this.home(fp, bucket);
    for (;;) {
      const h = this.hashes[i]!;
      if (h === 0) return false;
      if (h === fp && this.bucketOf[i] === bucket) {
        this.removeAt(i);
        return true;
      }
      i = i + 1 === this.slots ? 0 : i + 1;
    }
  }

  /**
   * Sweeps up to `maxSlots` slots for keys expired at `nowMs`, continuing where the last sweep
   * stopped, and returns how many it removed. `sweep(now, tracker.slots)` makes every count exact.
   */
  sweep(nowMs: number, maxSlots: number): number {
    const before = this.expirations;
    this.sweepSlots(Math.floor(nowMs / 1000), maxSlots);
    return this.expirations - before;
  }

  /**
   * The hashes of the keys active at `nowMs` (seen within the window), grouped by bucket: those of
   * bucket b are `hashes[offsets[b] .. offsets[b + 1])`, for b < `buckets` (keys of higher buckets
   * are left out), distinct and ascending. Two passes over the table and a sort per bucket,
   * O(slots + keys log keys): what lets another process count the union of several trackers' keys
   * in one linear merge (proxy/stats/merge.ts).
   */
  activeHashes(nowMs: number, buckets: number): { offsets: Uint32Array; hashes: Uint32Array } {
    const now = Math.floor(nowMs / 1000);
    const n = Math.max(0, Math.min(buckets, this.buckets));
    const offsets = new Uint32Array(n + 1);
    const { hashes, lastSeen, bucketOf, slots } = this;
    const window = this.windowSeconds;
    for (let i = 0; i < slots; i++) {
      if (hashes[i] === 0 || now - lastSeen[i]! > window) continue;
      const b = bucketOf[i]!;
      if (b < n) offsets[b + 1]!++;
    }
    for (let b = 0; b < n; b++) offsets[b + 1]! += offsets[b]!;
    const out = new Uint32Array(offsets[n]!);
    const next = offsets.slice(0, n);
    for (let i = 0; i < slots; i++) {
      if (hashes[i] === 0 || now - lastSeen[i]! > window) continue;
      const b = bucketOf[i]!;
      if (b < n) out[next[b]!++] = hashes[i]!;
    }
    for (let b = 0; b < n; b++)
      if (offsets[b + 1]! - offsets[b]! > 1) out.subarray(offsets[b], offsets[b + 1]).sort();
    return { offsets, hashes: out };
  }

  /** Forgets every key; memory stays allocated. */
  clear(): void {
    this.hashes.fill(0);
    this.counts.fill(0);
    this.size = 0;
    this.cursor = 0;
  }

  /** Doubles the table (up to maxTrackedSeries keys) and puts every key in its new place. */
  private grow(): void {
    const { hashes, lastSeen, bucketOf, pushedAt } = this;
    const old = this.slots;
    this.room = Math.min(this.maxTrackedSeries, this.room * 2);
    this.slots = slotsFor(this.room);
    this.hashes = new Uint32Array(this.slots);
    this.lastSeen = new Uint32Array(this.slots);
    this.bucketOf = new Uint16Array(this.slots);
    this.pushedAt = pushedAt === undefined ? undefined : new Uint32Array(this.slots);
    this.cursor = 0;
    for (let j = 0; j < old; j++) {
      const h = hashes[j]!;
      if (h === 0) continue;
      let i = this.home(h, bucketOf[j]!);
      while (this.hashes[i] !== 0) i = i + 1 === this.slots ? 0 : i + 1;
      this.hashes[i] = h;
      this.lastSeen[i] = lastSeen[j]!;
      this.bucketOf[i] = bucketOf[j]!;
      if (pushedAt !== undefined) this.pushedAt![i] = pushedAt[j]!;
    }
  }

  /** Adds a key known to be absent, after a grow; the caller checked the limit and the bound. */
  private insertNew(fp: number, bucket: number, now: number): AdmitResult {
    let i = this.home(fp, bucket);
    while (this.hashes[i] !== 0) i = i + 1 === this.slots ? 0 : i + 1;
    this.size++;
    this.hashes[i] = fp;
    this.bucketOf[i] = bucket;
    this.lastSeen[i] = now;
    if (this.pushedAt !== undefined) this.pushedAt[i] = now;
    this.counts[bucket]!++;
    return ADMIT_NEW;
  }

  /** Makes the per-bucket counts long enough for `bucket` (doubling, up to `buckets`). */
  private growCounts(bucket: number): void {
    let n = this.counts.length;
    while (n <= bucket) n *= 2;
    const counts = new Int32Array(Math.min(this.buckets, n));
    counts.set(this.counts);
    this.counts = counts;
  }

  private sweepSlots(now: number, maxSlots: number): void {
    const hashes = this.hashes;
    const lastSeen = this.lastSeen;
    const slots = this.slots;
    const window = this.windowSeconds;
    let c = this.cursor;
    let visited = 0;
    while (visited < maxSlots) {
      if (hashes[c] !== 0 && now - lastSeen[c]! > window) {
        // Backward shift may move a later key into slot c, so c is examined again. Every removal
        // shrinks the table, so this ends after at most maxSlots + size iterations.
        this.removeAt(c);
        this.expirations++;
      } else {
        c = c + 1 === slots ? 0 : c + 1;
        visited++;
      }
    }
    this.cursor = c;
  }

  /** The first slot of a key's probe path: its hash mixed with its bucket, scaled to the table. */
  private home(fp: number, bucket: number): number {
    let x = fp ^ Math.imul(bucket, 0x9e3779b1);
    x = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
    x ^= x >>> 13;
    return Math.floor(((x >>> 0) * this.slots) / 4294967296);
  }

  /**
   * Removes the key in slot `i` with backward-shift deletion (linear probing without tombstones):
   * each later key of the run moves into the hole when the hole lies on its probe path.
   */
  private removeAt(i: number): void {
    const hashes = this.hashes;
    const lastSeen = this.lastSeen;
    const bucketOf = this.bucketOf;
    const slots = this.slots;
    this.counts[bucketOf[i]!]!--;
    this.size--;
    let hole = i;
    let j = i + 1 === slots ? 0 : i + 1;
    for (;;) {
      const h = hashes[j]!;
      if (h === 0) break;
      const b = bucketOf[j]!;
      const home = this.home(h, b);
      const fromHome = j >= home ? j - home : j + slots - home;
      const fromHole = j >= hole ? j - hole : j + slots - hole;
      if (fromHome >= fromHole) {
        hashes[hole] = h;
        lastSeen[hole] = lastSeen[j]!;
        if (this.pushedAt !== undefined) this.pushedAt[hole] = this.pushedAt[j]!;
        bucketOf[hole] = b;
        hole = j;
      }
      j = j + 1 === slots ? 0 : j + 1;
    }
    hashes[hole] = 0;
  }
}

/** Slots for a table of `keys` keys: one more than the load bound, so an empty slot ends every probe. */
function slotsFor(keys: number): number {
  return Math.ceil(keys / MAX_LOAD) + 1;
}

/** The index every metric name maps to once a MetricInterner is full. */
export const METRIC_OVERFLOW = 0;
/** The name reported for METRIC_OVERFLOW. */
export const METRIC_OVERFLOW_NAME = '__cardinal_other__';

const NAME_SEED = 0x5bd1e995;
const decoder = new TextDecoder();
const encoder = new TextEncoder();

export interface MetricInternerOptions {
  /** Indices are 0..capacity-1, index 0 being METRIC_OVERFLOW; at most MAX_BUCKETS. */
  readonly capacity: number;
  /** Longer names are not interned but map to METRIC_OVERFLOW. Default 1024 bytes. */
  readonly maxNameBytes?: number;
}

/**
 * Metric names to small integers (1..capacity-1), the buckets of the trackers and the rows of the
 * statistics. Capped rather than evicting: a name keeps its index for the interner's lifetime, so
 * trackers built on the interner never see an index change meaning; once `capacity - 1` names are
 * held, every further name maps to METRIC_OVERFLOW, which the limits then treat as one metric (so a
 * metric-name bomb is contained by the overflow bucket's limit). Memory is bounded by capacity:
 * an Int32 table of 2 to 4 slots per name, plus each name once as a string and once as UTF-8 bytes
 * (`maxNameBytes` at most). Replace the interner together with its trackers (on a config reload)
 * to start afresh.
 *
 * Lookups of known names allocate nothing; a new name allocates its string and bytes once.
 */
export class MetricInterner {
  readonly capacity: number;
  readonly maxNameBytes: number;
  /** Lookups that mapped to METRIC_OVERFLOW because the interner was full or the name too long. */
  overflows = 0;

  private readonly table: Int32Array;
  private readonly mask: number;
  private readonly hashes: Uint32Array;
  private readonly names: string[] = [METRIC_OVERFLOW_NAME];
  private readonly bytes: Uint8Array[] = [new Uint8Array(0)];

  constructor(options: MetricInternerOptions) {
    const { capacity } = options;
    if (!Number.isInteger(capacity) || capacity < 2 || capacity > MAX_BUCKETS)
      throw new RangeError(`capacity must be an integer in 2..${MAX_BUCKETS}, got ${capacity}`);
    this.capacity = capacity;
    this.maxNameBytes = options.maxNameBytes ?? 1024;
    let slots = 4;
    while (slots < capacity * 2) slots *= 2;
    this.table = new Int32Array(slots);
    this.mask = slots - 1;
    this.hashes = new Uint32Array(capacity);
  }

  /** Names held, METRIC_OVERFLOW included: valid indices are 0..size-1. */
  get size(): number {
    return this.names.length;
  }

  /** The name of an index; METRIC_OVERFLOW_NAME for METRIC_OVERFLOW and for unknown indices. */
  name(index: number): string {
    return this.names[index] ?? METRIC_OVERFLOW_NAME;
  }

  /** The index of the UTF-8 name in `buf[start..end)`. */
  internBytes(buf: Uint8Array, start: number, end: number): number {
    const length = end - start;
    if (length > this.maxNameBytes) {
      this.overflows++;
      return METRIC_OVERFLOW;
    }
    const hash = hashBytes(buf, start, end, NAME_SEED);
    let i = hash & this.mask;
    for (;;) {
      const index = this.table[i]!;
      if (index === 0) break;
      if (this.hashes[index] === hash) {
        const known = this.bytes[index]!;
        if (known.length === length) {
          let j = 0;
          while (j < length && known[j] === buf[start + j]) j++;
          if (j === length) return index;
        }
      }
      i = (i + 1) & this.mask;
    }
    if (this.names.length >= this.capacity) {
      this.overflows++;
      return METRIC_OVERFLOW;
    }
    const copy = buf.slice(start, end);
    return this.add(i, hash, decoder.decode(copy), copy);
  }

  /** The index of `name`; the same index `internBytes` gives for its UTF-8 bytes. */
  internString(name: string): number {
    const hash = hashString(name, NAME_SEED);
    let i = hash & this.mask;
    for (;;) {
      const index = this.table[i]!;
      if (index === 0) break;
      if (this.hashes[index] === hash && this.names[index] === name) return index;
      i = (i + 1) & this.mask;
    }
    const bytes = encoder.encode(name);
    if (this.names.length >= this.capacity || bytes.length > this.maxNameBytes) {
      this.overflows++;
      return METRIC_OVERFLOW;
    }
    return this.add(i, hash, name, bytes);
  }

  private add(slot: number, hash: number, name: string, bytes: Uint8Array): number {
    const index = this.names.length;
    this.names.push(name);
    this.bytes.push(bytes);
    this.hashes[index] = hash;
    this.table[slot] = index;
    return index;
  }
}
