// The shared limit store on a server speaking the Redis protocol (Redis 7, Valkey, managed
// services), through ioredis, a single server or a Redis Cluster.
//
// Layout. A scope is one sorted set: members are hashes in base 36, scores their last-seen second.
// Its name is `{<prefix>:<tag>}<sub>`, so all scopes of one (policy, metric) share a hash tag and
// land on one cluster slot (Redis Cluster specification, "Hash tags"). Every scope touched gets an
// expiry of twice its window plus a minute, so scopes nobody uses any more disappear.
//
// Admission. One EVALSHA per hash tag runs ADMIT_SCRIPT over the checks of that tag; all of a
// request's scripts are written at once (auto-pipelining on a single server), so a request costs
// one round trip on a single server and one per node, in parallel, on a cluster. The script is atomic: two replicas
// asking at once for the last place under a limit get one yes and one no.
//
// Activity. Members a replica knows flow without asking; `touch` collects them and a timer sends
// `ZADD key GT now member ...` per scope every flush interval, so the window stays right for
// every replica.
//
// Failure. Every command has a timeout. A failed or late admission makes the store unavailable:
// `admit` then answers undefined at once (the engine falls back to its share of each limit) and a
// PING every retry interval finds out when the store answers again. Series admitted locally
// meanwhile are collected like activity and sent before the store decides anything again. State changes are logged and
// exported (`cardinal_proxy_limits_store_*`); the password is never logged or exported.

import { Cluster, Redis } from 'ioredis';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { rateLimited } from '../ratelimit.js';
import {
  type AdmissionCheck,
  ANSWER_ADMITTED,
  ANSWER_KNOWN,
  ANSWER_REFUSED,
  ANSWER_SKIPPED,
  CHECK_SERIES_START,
  groupByTag,
  type LimitStore,
  type LimitStoreStatus,
  type ReplicaCount,
  type ScopeRef,
} from './store.js';
import { parseStoreUrl, redactStoreUrl } from './url.js';

/**
 * KEYS: the scopes of one hash tag. ARGV[1]: now in seconds; ARGV[2 .. 1+#KEYS]: each key's window
 * in seconds; then four values per check: key index, member, limit (-1: none), flags (the CHECK_*
 * bits of proxy/limits/store.ts). Returns one ANSWER_* per check. Mirrors runGroup in store.ts.
 */
export const ADMIT_SCRIPT = `
local now = tonumber(ARGV[1])
local nk = #KEYS
local swept = {}
local out = {}
local stopped = false
local overflowed = false
for i = nk + 2, #ARGV, 4 do
  local k = tonumber(ARGV[i])
  local member = ARGV[i + 1]
  local limit = tonumber(ARGV[i + 2])
  local flags = tonumber(ARGV[i + 3])
  if flags % 2 == 1 then
    stopped = false
    overflowed = false
  end
  local r
  if stopped or (math.floor(flags / 8) % 2 == 1 and overflowed) then
    r = 3
  else
    local key = KEYS[k]
    if not swept[k] then
      redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. (now - tonumber(ARGV[1 + k])))
      swept[k] = true
    end
    if redis.call('ZSCORE', key, member) then
      redis.call('ZADD', key, 'GT', now, member)
      r = 0
    elseif limit < 0 or redis.call('ZCARD', key) < limit then
      redis.call('ZADD', key, now, member)
      r = 1
    else
      r = 2
      if math.floor(flags / 2) % 2 == 1 then stopped = true end
      if math.floor(flags / 4) % 2 == 1 then overflowed = true end
    end
  end
  out[#out + 1] = r
end
for k = 1, nk do
  redis.call('EXPIRE', KEYS[k], tonumber(ARGV[1 + k]) * 2 + 60)
end
return out
`;

/** Checks one script runs at most; larger requests are cut into several scripts. */
const MAX_CHECKS_PER_SCRIPT = 1000;

export interface RedisStoreOptions {
  /**
   * `redis://host:port[/db]`, `rediss://...` (TLS), or `redis+cluster://h1:p1,h2:p2` /
   * `rediss+cluster://...` for a Redis Cluster (any of its nodes; the rest are discovered).
   */
  readonly url: string;
  readonly password: string | undefined;
  /** Prepended to every key, inside the hash tag. */
  readonly prefix: string;
  /** How long an admission may take before the request decides locally. */
  readonly timeoutMs: number;
  readonly connectTimeoutMs: number;
  /** How often a store that failed is asked again. */
  readonly retryIntervalMs: number;
  /** How often collected activity is sent. */
  readonly flushIntervalMs: number;
  /** Members of collected activity held at most between flushes; more are dropped and counted. */
  readonly maxPendingTouches: number;
  /** Read when the state is told (logs, status); the engine reads the same for its shares. */
  readonly replicas: () => ReplicaCount;
  readonly registry: Registry;
  readonly logger: {
    warn(obj: object, msg: string): void;
    info(obj: object, msg: string): void;
  };
}

interface StoreMetrics {
  roundTrips: Counter<'op'>;
  errors: Counter<'op' | 'reason'>;
  latency: Histogram<'op'>;
  answers: Counter<'answer'>;
  fallback: Gauge;
  touched: Counter;
  touchDropped: Counter;
}

type Client = (Redis | Cluster) & {
  cardinalAdmit(numKeys: number, ...args: (string | number)[]): Promise<number[]>;
};

/** A long-lived connection to the store; owns the flush and probe timers. */
export class RedisLimitStore implements LimitStore {
  readonly #opts: RedisStoreOptions;
  readonly #client: Client;
  readonly #m: StoreMetrics;
  readonly #url: string;
  /** False until the first connection is ready, and while falling back. */
  #available = false;
  #since = new Date();
  #lastError: string | undefined = 'connecting';
  #ready: Promise<void>;
  #resolveReady: () => void = () => {};
  #pending = new Map<string, { window: number; members: Set<string> }>();
  #pendingCount = 0;
  readonly #flushTimer: NodeJS.Timeout;
  #probeTimer: NodeJS.Timeout | undefined;
  #closed = false;
  #recovering = false;
  #lastFlushFailed = false;
  readonly #log = rateLimited(30_000);

  constructor(opts: RedisStoreOptions) {
    this.#opts = opts;
    this.#url = redactStoreUrl(opts.url);
    this.#ready = new Promise((resolve) => {
      this.#resolveReady = resolve;
    });
    const parsed = parseStoreUrl(opts.url);
    const common = {
      password: opts.password,
      username: parsed.username,
      connectTimeout: opts.connectTimeoutMs,
      commandTimeout: opts.timeoutMs,
      // Fail fast while disconnected: the engine falls back instead of waiting for a reconnect.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      enableAutoPipelining: true,
      retryStrategy: () => Math.max(100, opts.retryIntervalMs),
      ...(parsed.tls ? { tls: {} } : {}),
    };
    const client: Redis | Cluster = parsed.cluster
      ? new Cluster(parsed.nodes, {
          // ioredis's cluster auto-pipelining refuses scripts of several slots in one tick; the
          // scripts of one request still go out at once, one per node, and run in parallel.
          redisOptions: { ...common, enableAutoPipelining: false },
          enableOfflineQueue: false,
          enableAutoPipelining: false,
          clusterRetryStrategy: () => Math.max(100, opts.retryIntervalMs),
          slotsRefreshTimeout: opts.connectTimeoutMs,
        })
      : new Redis({ ...common, host: parsed.nodes[0]!.host, port: parsed.nodes[0]!.port, db: parsed.db });
    client.defineCommand('cardinalAdmit', { lua: ADMIT_SCRIPT });
    // Connection errors surface through failed commands; the event only needs a listener.
    client.on('error', () => {});
    client.on('ready', () => void this.#answering());
    this.#client = client as Client;
    this.#m = createStoreMetrics(opts.registry, () => (this.#available ? 0 : 1));
    this.#flushTimer = setInterval(() => void this.#flush(), opts.flushIntervalMs);
    this.#flushTimer.unref();
  }

  get available(): boolean {
    return this.#available;
  }

  /**
   * Resolves once the store answers, or after `timeoutMs` (still falling back then): main.ts
   * waits for it before accepting requests, so that the first ones are decided globally.
   */
  async waitReady(timeoutMs: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.#ready, new Promise((r) => (timer = setTimeout(r, timeoutMs)))]);
    clearTimeout(timer);
    return this.#available;
  }

  /**
   * The store answers (again). What was admitted locally meanwhile is told to it first, so that
   * its counts include those series before it decides anything new.
   */
  async #answering(): Promise<void> {
    if (this.#available || this.#closed || this.#recovering) return;
    this.#recovering = true;
    try {
      await this.#flush(true);
    } finally {
      this.#recovering = false;
    }
    if (this.#closed || this.#lastFlushFailed) {
      this.#probe();
      return;
    }
    const first = this.#lastError === 'connecting';
    this.#available = true;
    this.#since = new Date();
    this.#lastError = undefined;
    this.#resolveReady();
    this.#opts.logger.info(
      { store: this.#url },
      first
        ? 'limit store connected; limits are global'
        : 'limit store answers again; limits are global again',
    );
  }

  async admit(checks: readonly AdmissionCheck[], nowMs: number): Promise<Uint8Array | undefined> {
    if (!this.#available || this.#closed) return undefined;
    const now = Math.floor(nowMs / 1000);
    const started = performance.now();
    const out = new Uint8Array(checks.length);
    try {
      const groups = groupByTag(checks);
      const replies = await Promise.all(groups.map((g) => this.#runChunked(g.checks, now)));
      for (let gi = 0; gi < groups.length; gi++) {
        const at = groups[gi]!.at;
        const reply = replies[gi]!;
        if (reply.length !== at.length) throw new Error(`script answered ${reply.length} of ${at.length}`);
        for (let k = 0; k < at.length; k++) out[at[k]!] = reply[k]!;
      }
    } catch (err) {
      this.#failed('admit', err);
      return undefined;
    }
    this.#m.roundTrips.inc({ op: 'admit' });
    this.#m.latency.observe({ op: 'admit' }, (performance.now() - started) / 1000);
    let known = 0;
    let admitted = 0;
    let refused = 0;
    let skipped = 0;
    for (const a of out) {
      if (a === ANSWER_KNOWN) known++;
      else if (a === ANSWER_ADMITTED) admitted++;
      else if (a === ANSWER_REFUSED) refused++;
      else if (a === ANSWER_SKIPPED) skipped++;
    }
    if (known) this.#m.answers.inc({ answer: 'known' }, known);
    if (admitted) this.#m.answers.inc({ answer: 'admitted' }, admitted);
    if (refused) this.#m.answers.inc({ answer: 'refused' }, refused);
    if (skipped) this.#m.answers.inc({ answer: 'skipped' }, skipped);
    return out;
  }

  /**
   * A group's checks in scripts of at most MAX_CHECKS_PER_SCRIPT checks, cut between series (each
   * series' checks stay in one atomic script), all sent at once: one round trip still, and other
   * replicas' scripts get their turn between them.
   */
  async #runChunked(checks: readonly AdmissionCheck[], now: number): Promise<number[]> {
    if (checks.length <= MAX_CHECKS_PER_SCRIPT) return this.#runGroup(checks, now);
    const chunks: AdmissionCheck[][] = [];
    let current: AdmissionCheck[] = [];
    for (const c of checks) {
      if (c.flags & CHECK_SERIES_START && current.length >= MAX_CHECKS_PER_SCRIPT) {
        chunks.push(current);
        current = [];
      }
      current.push(c);
    }
    if (current.length > 0) chunks.push(current);
    const replies = await Promise.all(chunks.map((c) => this.#runGroup(c, now)));
    return replies.flat();
  }

  #runGroup(checks: readonly AdmissionCheck[], now: number): Promise<number[]> {
    const prefix = this.#opts.prefix;
    const keyIndex = new Map<string, number>();
    const keys: string[] = [];
    const windows: number[] = [];
    const args: (string | number)[] = [];
    for (const c of checks) {
      const key = `{${prefix}:${c.tag}}${c.sub}`;
      let k = keyIndex.get(key);
      if (k === undefined) {
        keys.push(key);
        windows.push(c.windowSeconds);
        k = keys.length;
        keyIndex.set(key, k);
      }
      args.push(k, c.member, c.limit, c.flags);
    }
    return this.#client.cardinalAdmit(keys.length, ...keys, now, ...windows, ...args);
  }

  touch(tag: string, sub: string, member: string, windowSeconds: number): void {
    if (this.#pendingCount >= this.#opts.maxPendingTouches) {
      this.#m.touchDropped.inc();
      return;
    }
    const key = `{${this.#opts.prefix}:${tag}}${sub}`;
    let p = this.#pending.get(key);
    if (p === undefined) {
      p = { window: windowSeconds, members: new Set() };
      this.#pending.set(key, p);
    }
    const before = p.members.size;
    p.members.add(member);
    this.#pendingCount += p.members.size - before;
  }

  /**
   * Sends the collected activity. While the store is unavailable it is kept (up to
   * maxPendingTouches members) for when the store answers again; `recovering` sends it then.
   */
  async #flush(recovering = false): Promise<void> {
    this.#lastFlushFailed = false;
    if (this.#pending.size === 0 || (!this.#available && !recovering)) return;
    const pending = this.#pending;
    const count = this.#pendingCount;
    this.#pending = new Map();
    this.#pendingCount = 0;
    const now = Math.floor(Date.now() / 1000);
    const sends: Promise<unknown>[] = [];
    for (const [key, { window, members }] of pending) {
      const all = [...members];
      for (let i = 0; i < all.length; i += 512) {
        const args: (string | number)[] = [];
        for (const m of all.slice(i, i + 512)) args.push(now, m);
        sends.push(this.#client.zadd(key, 'GT', ...args));
      }
      sends.push(this.#client.expire(key, window * 2 + 60));
    }
    try {
      await Promise.all(sends);
      this.#m.roundTrips.inc({ op: 'refresh' });
      this.#m.touched.inc(count);
    } catch (err) {
      this.#lastFlushFailed = true;
      this.#m.touchDropped.inc(count);
      if (!recovering) this.#failed('refresh', err);
    }
  }

  #failed(op: string, err: unknown): void {
    const message = err instanceof Error ? err.message : String(err);
    const reason = /timed? ?out/i.test(message)
      ? 'timeout'
      : /writeable|connect|closed|ECONNREFUSED|ready/i.test(message)
        ? 'unavailable'
        : 'error';
    this.#m.errors.inc({ op, reason });
    this.#lastError = `${op}: ${message}`;
    if (this.#available) {
      this.#available = false;
      this.#since = new Date();
      this.#opts.logger.warn(
        { store: this.#url, reason, replicas: this.#opts.replicas().count },
        `limit store failed (${message}); enforcing each limit's share locally until it answers again`,
      );
      this.#probe();
    } else {
      this.#log(`${op}:${reason}`, (suppressed) =>
        this.#opts.logger.warn({ store: this.#url, reason, suppressed }, `limit store: ${message}`),
      );
    }
  }

  /** Asks the store every retry interval until it answers, then goes back to it. */
  #probe(): void {
    if (this.#probeTimer !== undefined || this.#closed) return;
    this.#probeTimer = setTimeout(async () => {
      this.#probeTimer = undefined;
      try {
        await this.#client.ping();
        this.#m.roundTrips.inc({ op: 'probe' });
        await this.#answering();
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err);
        this.#m.errors.inc({ op: 'probe', reason: 'unavailable' });
        this.#lastError = `probe: ${message}`;
        this.#probe();
      }
    }, this.#opts.retryIntervalMs);
    this.#probeTimer.unref();
  }

  status(): LimitStoreStatus {
    const replicas = this.#opts.replicas();
    return {
      state: this.#available ? 'store' : 'fallback',
      url: this.#url,
      since: this.#since,
      lastError: this.#lastError,
      replicas: replicas.count,
      replicasFrom: replicas.source,
    };
  }

  /**
   * ZCOUNT of the members seen within each scope's window, all sent at once (one round trip on a
   * single server, one per node on a cluster). Not an admission: a failure here is counted but
   * does not make the replica fall back.
   */
  async counts(scopes: readonly ScopeRef[], nowMs: number): Promise<number[] | undefined> {
    if (!this.#available || this.#closed) return undefined;
    const now = Math.floor(nowMs / 1000);
    const prefix = this.#opts.prefix;
    const started = performance.now();
    try {
      const out = await Promise.all(
        scopes.map((s) => this.#client.zcount(`{${prefix}:${s.tag}}${s.sub}`, now - s.windowSeconds, '+inf')),
      );
      this.#m.roundTrips.inc({ op: 'count' });
      this.#m.latency.observe({ op: 'count' }, (performance.now() - started) / 1000);
      return out;
    } catch (err) {
      this.#m.errors.inc({ op: 'count', reason: 'error' });
      this.#log('count', (suppressed) =>
        this.#opts.logger.warn(
          { store: this.#url, suppressed },
          `limit store: counting for statistics failed: ${err instanceof Error ? err.message : String(err)}`,
        ),
      );
      return undefined;
    }
  }

  /** The server's `used_memory` (INFO memory), for benchmarks. */
  async usedMemory(): Promise<number> {
    const client = this.#client;
    const nodes = client instanceof Cluster ? client.nodes('master') : [client];
    let total = 0;
    for (const n of nodes) {
      const info = await n.info('memory');
      total += Number(/used_memory:(\d+)/.exec(info)?.[1] ?? '0');
    }
    return total;
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#flushTimer);
    if (this.#probeTimer !== undefined) clearTimeout(this.#probeTimer);
    await this.#flush().catch(() => {});
    this.#client.disconnect();
  }
}

function createStoreMetrics(registry: Registry, fallback: () => number): StoreMetrics {
  const registers = [registry];
  return {
    roundTrips: new Counter({
      name: 'cardinal_proxy_limits_store_round_trips_total',
      help: 'Round trips to the shared limit store, by operation: admit (the unknown series of one request), refresh (batched activity of known series), probe (while falling back), count (global counts for GET /api/v1/stats/limits).',
      labelNames: ['op'],
      registers,
    }),
    errors: new Counter({
      name: 'cardinal_proxy_limits_store_errors_total',
      help: 'Failed operations on the shared limit store, by operation and reason (timeout, unavailable, error).',
      labelNames: ['op', 'reason'],
      registers,
    }),
    latency: new Histogram({
      name: 'cardinal_proxy_limits_store_latency_seconds',
      help: 'Time one answered operation on the shared limit store took, by operation.',
      labelNames: ['op'],
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25],
      registers,
    }),
    answers: new Counter({
      name: 'cardinal_proxy_limits_store_answers_total',
      help: 'Limit checks the shared store answered, by answer: known, admitted, refused, skipped.',
      labelNames: ['answer'],
      registers,
    }),
    fallback: new Gauge({
      name: 'cardinal_proxy_limits_store_fallback',
      // --workers N: 1 while any worker falls back; /metrics shows the largest.
      aggregator: 'max',
      help: '1 while the shared limit store does not answer and each limit is enforced locally with its share (limit / replicas), 0 while limits are global.',
      registers,
      collect() {
        this.set(fallback());
      },
    }),
    touched: new Counter({
      name: 'cardinal_proxy_limits_store_refreshed_total',
      help: 'Activity of known series and label values sent to the shared limit store, in members.',
      registers,
    }),
    touchDropped: new Counter({
      name: 'cardinal_proxy_limits_store_refresh_dropped_total',
      help: 'Activity of known members not sent to the shared limit store (more pending than the tracked series while it is unavailable, or a failed send); they are sent at their next refresh.',
      registers,
    }),
  };
}
