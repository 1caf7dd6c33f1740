// The shared state of the limits stage (README "Limits across replicas"). The engine reaches the
// network only through `LimitStore`, and only in two ways:
// - `admit`: the limit checks of every series of one request that this replica does not know, in
//   one call (one round trip: one server-side script per hash tag, all sent at once);
// - `touch`: activity of keys this replica knows, collected and sent in the background, batched.
//
// Without a shared store the engine decides with its own trackers (proxy/pipeline/cardinality.ts):
// that is the local implementation, today's behaviour, and it never calls anything here.
//
// A store holds, per limit scope, the set of active members (series hashes, or label-value
// hashes for perLabel) with their last-seen second. A member is active while
// `now - lastSeen <= windowSeconds`. A scope is named by a hash tag and a suffix: every scope of
// one (policy, metric) shares the tag, so the checks of a series against its metric's limits run
// in one script on one Redis Cluster node.

/** The first check of a series: the script's per-series state starts afresh. */
export const CHECK_SERIES_START = 1;
/** When refused, the series is dropped: its later checks are skipped (answer SKIPPED). */
export const CHECK_STOP = 2;
/** When refused, the series is rewritten to its overflow series (see CHECK_SKIP_IF_OVERFLOWED). */
export const CHECK_SETS_OVERFLOW = 4;
/** Skipped when an earlier CHECK_SETS_OVERFLOW check of the series was refused. */
export const CHECK_SKIP_IF_OVERFLOWED = 8;

/** The member was active: its last-seen time was refreshed. */
export const ANSWER_KNOWN = 0;
/** The member was new and its scope under the limit: it is now active. */
export const ANSWER_ADMITTED = 1;
/** The member was new and its scope at the limit: it was not added. */
export const ANSWER_REFUSED = 2;
/** Not looked at (an earlier check of the series stopped it). */
export const ANSWER_SKIPPED = 3;

export interface AdmissionCheck {
  /** Hash tag of the scope: no `{` or `}` in it. */
  readonly tag: string;
  /** What follows the tag in the scope's name ('' for the tag's own scope). */
  readonly sub: string;
  /** The member: a hash in base 36. */
  readonly member: string;
  /** Largest number of active members; -1 for none (track only). */
  readonly limit: number;
  readonly windowSeconds: number;
  /** CHECK_* bits. */
  readonly flags: number;
}

/** What GET /api/v1/status/config, /-/ready and the metrics say about the store. */
export interface LimitStoreStatus {
  /** `store`: decisions are global; `fallback`: each replica enforces its share of every limit. */
  readonly state: 'store' | 'fallback';
  /** The store's address without credentials. */
  readonly url: string;
  readonly since: Date;
  readonly lastError: string | undefined;
  /** The share of each limit a replica enforces while falling back: limit / replicas. */
  readonly replicas: number;
  /** Who said how many replicas there are (ReplicaCount.source). */
  readonly replicasFrom: ReplicaCount['source'];
}

/**
 * How many replicas share the limits, read at every fallback decision: the operator's count of the
 * proxies it discovers (policy/replicas.ts), or `--limits.replicas` without one.
 */
export interface ReplicaCount {
  readonly count: number;
  readonly source: 'operator' | 'flag';
}

/** One scope whose active members `LimitStore.counts` counts. */
export interface ScopeRef {
  readonly tag: string;
  readonly sub: string;
  readonly windowSeconds: number;
}

export interface LimitStore {
  /**
   * Asks for the checks in one round trip and resolves with one ANSWER_* per check, in order; or
   * with undefined when the store did not answer in time or is known to be down, in which case
   * the caller decides locally with its share of each limit. Never rejects.
   */
  admit(checks: readonly AdmissionCheck[], nowMs: number): Promise<Uint8Array | undefined>;
  /**
   * Records that a member this replica knows is still active. Sent in the background with others,
   * at most once per flush interval per member; never blocks.
   */
  touch(tag: string, sub: string, member: string, windowSeconds: number): void;
  /**
   * The active members of each scope over all replicas, in order, for statistics (off the hot
   * path); undefined when the store does not answer. Never rejects.
   */
  counts(scopes: readonly ScopeRef[], nowMs: number): Promise<number[] | undefined>;
  /** False while falling back; the caller then skips `admit` and decides locally. */
  readonly available: boolean;
  status(): LimitStoreStatus;
  close(): Promise<void>;
}

/** The share of `limit` one of `replicas` replicas enforces on its own. */
export function fallbackShare(limit: number, replicas: number): number {
  if (!Number.isFinite(limit)) return limit;
  return Math.max(1, Math.floor(limit / replicas));
}

/**
 * The checks grouped by hash tag, in their order, each group with CHECK_SERIES_START set on the
 * first check of every series it holds: what one script per tag receives. `at[i]` are the indices
 * of the group's checks in `checks`.
 */
export interface TagGroup {
  readonly tag: string;
  readonly checks: AdmissionCheck[];
  readonly at: number[];
}

export function groupByTag(checks: readonly AdmissionCheck[]): TagGroup[] {
  const groups = new Map<string, TagGroup & { lastSeries: number }>();
  let series = -1;
  for (let i = 0; i < checks.length; i++) {
    const c = checks[i]!;
    if (c.flags & CHECK_SERIES_START || series < 0) series++;
    let g = groups.get(c.tag);
    if (g === undefined) {
      g = { tag: c.tag, checks: [], at: [], lastSeries: -1 };
      groups.set(c.tag, g);
    }
    const start = g.lastSeries !== series;
    g.lastSeries = series;
    g.checks.push(start ? { ...c, flags: c.flags | CHECK_SERIES_START } : c);
    g.at.push(i);
  }
  return [...groups.values()].map(({ tag, checks, at }) => ({ tag, checks, at }));
}

/**
 * The checks of one tag group against scopes held in memory: the specification the Redis script
 * implements (proxy/limits/redis.ts), used as the model in its tests and by tests of the engine.
 */
export function runGroup(
  scopes: Map<string, Map<string, number>>,
  checks: readonly AdmissionCheck[],
  nowSeconds: number,
): number[] {
  const out: number[] = [];
  const swept = new Set<string>();
  let stopped = false;
  let overflowed = false;
  for (const c of checks) {
    if (c.flags & CHECK_SERIES_START) {
      stopped = false;
      overflowed = false;
    }
    if (stopped || (c.flags & CHECK_SKIP_IF_OVERFLOWED && overflowed)) {
      out.push(ANSWER_SKIPPED);
      continue;
    }
    const name = `${c.tag}\0${c.sub}`;
    let scope = scopes.get(name);
    if (scope === undefined) {
      scope = new Map();
      scopes.set(name, scope);
    }
    if (!swept.has(name)) {
      for (const [m, t] of scope) if (t < nowSeconds - c.windowSeconds) scope.delete(m);
      swept.add(name);
    }
    if (scope.has(c.member)) {
      scope.set(c.member, Math.max(scope.get(c.member)!, nowSeconds));
      out.push(ANSWER_KNOWN);
    } else if (c.limit < 0 || scope.size < c.limit) {
      scope.set(c.member, nowSeconds);
      out.push(ANSWER_ADMITTED);
    } else {
      out.push(ANSWER_REFUSED);
      if (c.flags & CHECK_STOP) stopped = true;
      if (c.flags & CHECK_SETS_OVERFLOW) overflowed = true;
    }
  }
  return out;
}

/**
 * An in-memory LimitStore with the Redis store's semantics: for tests of everything above the
 * network (several engines sharing one instance behave like replicas sharing one Redis). `down`
 * makes it answer like an unreachable store.
 */
export class MemoryLimitStore implements LimitStore {
  readonly scopes = new Map<string, Map<string, number>>();
  down = false;
  admits = 0;
  touches = 0;
  readonly replicas: number;

  constructor(replicas = 1) {
    this.replicas = replicas;
  }

  get available(): boolean {
    return !this.down;
  }

  async admit(checks: readonly AdmissionCheck[], nowMs: number): Promise<Uint8Array | undefined> {
    if (this.down) return undefined;
    this.admits++;
    const out = new Uint8Array(checks.length);
    for (const g of groupByTag(checks)) {
      const answers = runGroup(this.scopes, g.checks, Math.floor(nowMs / 1000));
      for (let k = 0; k < answers.length; k++) out[g.at[k]!] = answers[k]!;
    }
    return out;
  }

  touch(tag: string, sub: string, member: string): void {
    if (this.down) return;
    this.touches++;
    const name = `${tag}\0${sub}`;
    let scope = this.scopes.get(name);
    if (scope === undefined) {
      scope = new Map();
      this.scopes.set(name, scope);
    }
    scope.set(member, Math.floor(Date.now() / 1000));
  }

  async counts(scopes: readonly ScopeRef[], nowMs: number): Promise<number[] | undefined> {
    if (this.down) return undefined;
    const now = Math.floor(nowMs / 1000);
    return scopes.map((s) => {
      let n = 0;
      for (const t of this.scopes.get(`${s.tag}\0${s.sub}`)?.values() ?? [])
        if (t >= now - s.windowSeconds) n++;
      return n;
    });
  }

  /** Active members of a scope. */
  size(tag: string, sub = ''): number {
    return this.scopes.get(`${tag}\0${sub}`)?.size ?? 0;
  }

  status(): LimitStoreStatus {
    return {
      state: this.down ? 'fallback' : 'store',
      url: 'memory:',
      since: new Date(0),
      lastError: undefined,
      replicas: this.replicas,
      replicasFrom: 'flag',
    };
  }

  async close(): Promise<void> {}
}
