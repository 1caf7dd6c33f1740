// Leader election over a coordination.k8s.io/v1 Lease, so that of several operator replicas only one
// writes at a time. The semantics are client-go's leaderelection package (LeaseLock with
// ReleaseOnCancel): a candidate takes the Lease when it is absent, released or expired, the leader
// renews it every retry period, and a leader that cannot renew for the renew deadline stops leading
// before anyone else may take over (leaseDuration > renewDeadline). Every write carries the
// resourceVersion it read, so of two candidates racing for the same Lease the API server lets
// exactly one win (API conventions, "Concurrency Control and Consistency").

import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import {
  ApiException,
  CoordinationV1Api,
  type KubeConfig,
  type V1Lease,
  V1MicroTime,
} from '@kubernetes/client-node';
import { type ThrottleOptions, withThrottleRetry } from '../kube/throttle.js';

/** What a Lease says about its holder. Times are milliseconds since the epoch. */
export interface LeaseSpec {
  /** Who holds the Lease; empty when it was released. */
  holderIdentity: string;
  /** How long the holder promises the Lease stays valid after renewTime. */
  leaseDurationSeconds: number | undefined;
  acquireTime: number | undefined;
  renewTime: number | undefined;
  /** How many times the Lease changed hands. */
  leaseTransitions: number;
}

export interface Lease {
  metadata: { resourceVersion: string };
  spec: LeaseSpec;
}

export interface LeaseRef {
  namespace: string;
  name: string;
}

/**
 * The three calls an elector makes. A call the API server refuses rejects with a LeaseApiError that
 * carries the HTTP status; a call that never reaches it rejects with whatever the transport threw.
 */
export interface LeaseApi {
  /** The Lease, or undefined when it does not exist. */
  get(ref: LeaseRef): Promise<Lease | undefined>;
  /** Creates the Lease; rejects with 409 when it already exists. */
  create(request: LeaseRef & { spec: LeaseSpec }): Promise<Lease>;
  /** Replaces the Lease if it is still at `resourceVersion`; rejects with 409 when it is not. */
  replace(request: LeaseRef & { resourceVersion: string; spec: LeaseSpec }): Promise<Lease>;
}

export class LeaseApiError extends Error {
  readonly status: number;

  constructor(status: number, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'LeaseApiError';
    this.status = status;
  }
}

/** The HTTP status of a failed LeaseApi call, or undefined when the API server was not reached. */
export function leaseErrorStatus(err: unknown): number | undefined {
  return err instanceof LeaseApiError ? err.status : undefined;
}

export type Decision = 'acquire' | 'renew' | 'follow';

/**
 * What a candidate may do with the Lease as read at `now`: renew it when it holds it, acquire it when
 * it is absent, released or expired, and otherwise follow. A Lease is expired once renewTime plus
 * the holder's leaseDurationSeconds (`durationMs` when the Lease names none) lies before `now`.
 */
export function decide(
  lease: Lease | undefined,
  now: number,
  identity: string,
  durationMs: number,
): Decision {
  if (lease === undefined) return 'acquire';
  const { holderIdentity, renewTime, acquireTime } = lease.spec;
  if (holderIdentity === identity) return 'renew';
  if (holderIdentity === '') return 'acquire';
  const renewed = renewTime ?? acquireTime;
  if (renewed === undefined) return 'acquire';
  return renewed + holderDurationMs(lease.spec, durationMs) < now ? 'acquire' : 'follow';
}

function holderDurationMs(spec: LeaseSpec, fallbackMs: number): number {
  return spec.leaseDurationSeconds === undefined ? fallbackMs : spec.leaseDurationSeconds * 1000;
}

/**
 * The spec with which `identity` takes or renews a Lease whose spec was `previous` (undefined when
 * the Lease does not exist yet). A takeover counts a transition and restarts acquireTime, as
 * client-go does, including a takeover of a released Lease.
 */
export function heldSpec(
  previous: LeaseSpec | undefined,
  identity: string,
  now: number,
  durationSeconds: number,
): LeaseSpec {
  const ours = previous !== undefined && previous.holderIdentity === identity;
  const leaseTransitions = previous === undefined ? 0 : previous.leaseTransitions + (ours ? 0 : 1);
  return {
    holderIdentity: identity,
    leaseDurationSeconds: durationSeconds,
    acquireTime: ours ? previous.acquireTime : now,
    renewTime: now,
    leaseTransitions,
  };
}

/**
 * The spec a leader writes when it shuts down gracefully (client-go's ReleaseOnCancel): no holder,
 * so any candidate acquires at once, and a one-second duration for candidates that ignore an empty
 * holder.
 */
export function releasedSpec(previous: LeaseSpec, now: number): LeaseSpec {
  return {
    holderIdentity: '',
    leaseDurationSeconds: 1,
    acquireTime: now,
    renewTime: now,
    leaseTransitions: previous.leaseTransitions,
  };
}

/** An identity that stays unique when a pod restarts under the same name: the name and a random suffix. */
export function candidateIdentity(podName: string = hostname()): string {
  return `${podName}_${randomBytes(6).toString('hex')}`;
}

export interface LeaderElectorOptions {
  namespace: string;
  /** The Lease's name, e.g. cardinal-operator. */
  name: string;
  /** This replica's identity; unique among candidates (see candidateIdentity). */
  identity: string;
  /** How long a Lease stays valid after its last renewal; default 15 s. */
  leaseDurationMs?: number;
  /** How long the leader keeps leading without a successful renewal; default 10 s. */
  renewDeadlineMs?: number;
  /** How often candidates try to acquire and the leader renews; default 2 s. */
  retryPeriodMs?: number;
  client: LeaseApi;
  /**
   * Called when this replica becomes leader. It may write until `signal` aborts, and must stop
   * writing as soon as it does: by then another replica may be about to take over.
   */
  onStartedLeading(signal: AbortSignal): void;
  /**
   * Called when leading ends, after the signal aborted. release() waits for the returned promise
   * before it gives the Lease up, so resolve it only once no write is in flight.
   */
  onStoppedLeading(): void | Promise<void>;
  /** Failed API calls and callbacks that threw; the elector retries on its own. */
  onError?(err: unknown): void;
  /** The clock; Date.now by default. */
  now?: () => number;
}

type Attempt = 'held' | 'taken' | 'failed';

interface Term {
  controller: AbortController;
  /** When the last successful renewal was sent: the Lease is ours until then plus leaseDuration. */
  renewedAt: number;
  deadline: NodeJS.Timeout;
}

/**
 * Campaigns for a Lease and calls back when this replica starts and stops leading. start() begins,
 * release() ends with the Lease handed over at once, stop() ends without touching the Lease (which
 * then expires), as a crash would.
 */
export class LeaderElector {
  readonly #ref: LeaseRef;
  readonly #identity: string;
  readonly #leaseDurationMs: number;
  readonly #renewDeadlineMs: number;
  readonly #retryPeriodMs: number;
  readonly #client: LeaseApi;
  readonly #onStartedLeading: (signal: AbortSignal) => void;
  readonly #onStoppedLeading: () => void | Promise<void>;
  readonly #onError: (err: unknown) => void;
  readonly #now: () => number;

  #state: 'new' | 'running' | 'stopped' = 'new';
  #timer: NodeJS.Timeout | undefined;
  #attempt: Promise<void> | undefined;
  #term: Term | undefined;
  #stopping: Promise<void> = Promise.resolve();
  /** The Lease as last read or written. */
  #lease: Lease | undefined;
  /** When this replica first saw the Lease's current resourceVersion, by its own clock. */
  #observed: { resourceVersion: string; at: number } | undefined;

  constructor(options: LeaderElectorOptions) {
    const {
      leaseDurationMs = 15_000,
      renewDeadlineMs = 10_000,
      retryPeriodMs = 2_000,
      now = () => Date.now(),
      onError = () => {},
    } = options;
    if (!(leaseDurationMs > renewDeadlineMs && renewDeadlineMs > retryPeriodMs && retryPeriodMs > 0)) {
      throw new RangeError(
        `leader election needs leaseDuration > renewDeadline > retryPeriod > 0, got ${leaseDurationMs} ms, ${renewDeadlineMs} ms, ${retryPeriodMs} ms`,
      );
    }
    if (options.identity === '') throw new RangeError('leader election needs a non-empty identity');
    this.#ref = { namespace: options.namespace, name: options.name };
    this.#identity = options.identity;
    this.#leaseDurationMs = leaseDurationMs;
    this.#renewDeadlineMs = renewDeadlineMs;
    this.#retryPeriodMs = retryPeriodMs;
    this.#client = options.client;
    this.#onStartedLeading = options.onStartedLeading;
    this.#onStoppedLeading = options.onStoppedLeading;
    this.#onError = onError;
    this.#now = now;
  }

  get identity(): string {
    return this.#identity;
  }

  /**
   * Whether this replica leads now. False as soon as the renew deadline has passed, even if the
   * timer that ends the term has not run yet.
   */
  isLeader(): boolean {
    const term = this.#term;
    return term !== undefined && this.#now() - term.renewedAt < this.#renewDeadlineMs;
  }

  start(): void {
    if (this.#state !== 'new') throw new Error('LeaderElector.start() may be called once');
    this.#state = 'running';
    this.#loop();
  }

  /** Stops campaigning and leading, and leaves the Lease as it is: it expires after leaseDuration. */
  async stop(): Promise<void> {
    await this.#halt();
    await this.#endTerm();
  }

  /**
   * Stops campaigning and leading, waits for onStoppedLeading, then marks the Lease released so that
   * another replica takes over within one retry period. Never rejects: when the Lease cannot be
   * written, the error goes to onError and the Lease expires instead.
   */
  async release(): Promise<void> {
    await this.#halt();
    await this.#endTerm();
    const lease = this.#lease;
    if (lease === undefined || lease.spec.holderIdentity !== this.#identity) return;
    try {
      this.#lease = await this.#call(
        this.#client.replace({
          ...this.#ref,
          resourceVersion: lease.metadata.resourceVersion,
          spec: releasedSpec(lease.spec, this.#now()),
        }),
      );
    } catch (err) {
      // 409: the Lease changed since we last held it, so it is no longer ours to release.
      if (leaseErrorStatus(err) !== 409) this.#onError(err);
    }
  }

  #loop(): void {
    const began = this.#now();
    this.#attempt = this.#tryOnce(began).finally(() => {
      this.#attempt = undefined;
      if (this.#state !== 'running') return;
      const wait = Math.max(0, began + this.#retryPeriodMs - this.#now());
      this.#timer = setTimeout(() => this.#loop(), wait);
    });
  }

  async #halt(): Promise<void> {
    this.#state = 'stopped';
    clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#attempt;
  }

  async #tryOnce(at: number): Promise<void> {
    const attempt = await this.#acquireOrRenew(at);
    if (this.#state !== 'running') return;
    if (attempt === 'taken') {
      await this.#endTerm();
      return;
    }
    // A renewal that took longer than the renew deadline came too late: the term has ended (or
    // ends now), and the next attempt starts a new one from a fresh renewTime.
    if (attempt === 'failed' || this.#now() - at >= this.#renewDeadlineMs) return;
    if (this.#term === undefined) this.#beginTerm(at);
    else this.#renewTerm(this.#term, at);
  }

  /** One round of client-go's tryAcquireOrRenew. Never rejects. */
  async #acquireOrRenew(at: number): Promise<Attempt> {
    const durationSeconds = Math.ceil(this.#leaseDurationMs / 1000);
    const held = this.#lease;
    // While leading, renew the copy last written without reading it first. A 409 means the Lease
    // changed under us; the read below finds out whether it is still ours.
    if (this.#term !== undefined && held !== undefined && held.spec.holderIdentity === this.#identity) {
      try {
        this.#lease = await this.#call(
          this.#client.replace({
            ...this.#ref,
            resourceVersion: held.metadata.resourceVersion,
            spec: heldSpec(held.spec, this.#identity, at, durationSeconds),
          }),
        );
        return 'held';
      } catch (err) {
        if (leaseErrorStatus(err) !== 409) return this.#failed(err);
      }
    }

    let lease: Lease | undefined;
    try {
      lease = await this.#call(this.#client.get(this.#ref));
    } catch (err) {
      return this.#failed(err);
    }
    if (lease === undefined) {
      try {
        this.#lease = await this.#call(
          this.#client.create({
            ...this.#ref,
            spec: heldSpec(undefined, this.#identity, at, durationSeconds),
          }),
        );
        return 'held';
      } catch (err) {
        return leaseErrorStatus(err) === 409 ? 'taken' : this.#failed(err);
      }
    }

    this.#lease = lease;
    if (this.#observed?.resourceVersion !== lease.metadata.resourceVersion) {
      this.#observed = { resourceVersion: lease.metadata.resourceVersion, at };
    }
    const decision = decide(lease, at, this.#identity, this.#leaseDurationMs);
    if (decision === 'follow') return 'taken';
    // The holder's renewTime comes from its clock, not ours. client-go trusts only how long the
    // Lease has stood unchanged by the candidate's own clock, so a candidate whose clock runs ahead
    // cannot take a Lease that is still being renewed; we require both.
    const durationMs = holderDurationMs(lease.spec, this.#leaseDurationMs);
    if (decision === 'acquire' && lease.spec.holderIdentity !== '' && at - this.#observed.at < durationMs) {
      return 'taken';
    }
    try {
      this.#lease = await this.#call(
        this.#client.replace({
          ...this.#ref,
          resourceVersion: lease.metadata.resourceVersion,
          spec: heldSpec(lease.spec, this.#identity, at, durationSeconds),
        }),
      );
      return 'held';
    } catch (err) {
      // 409: another candidate wrote the Lease between our read and our write, and won.
      return leaseErrorStatus(err) === 409 ? 'taken' : this.#failed(err);
    }
  }

  #failed(err: unknown): Attempt {
    this.#onError(err);
    return 'failed';
  }

  /**
   * Bounds a call by the renew deadline, so that a request that hangs cannot stall the loop. The
   * abandoned request may still land; the next round reads the Lease and acts on what it says.
   */
  #call<T>(request: Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`lease request took longer than ${this.#renewDeadlineMs} ms`)),
        this.#renewDeadlineMs,
      );
    });
    request.catch(() => {});
    return Promise.race([request, timeout]).finally(() => clearTimeout(timer));
  }

  #beginTerm(at: number): void {
    const controller = new AbortController();
    this.#term = { controller, renewedAt: at, deadline: this.#deadlineTimer(at) };
    try {
      this.#onStartedLeading(controller.signal);
    } catch (err) {
      this.#onError(err);
    }
  }

  #renewTerm(term: Term, at: number): void {
    clearTimeout(term.deadline);
    term.renewedAt = at;
    term.deadline = this.#deadlineTimer(at);
  }

  #deadlineTimer(renewedAt: number): NodeJS.Timeout {
    const wait = Math.max(0, renewedAt + this.#renewDeadlineMs - this.#now());
    return setTimeout(() => {
      this.#endTerm().catch(this.#onError);
    }, wait);
  }

  /** Ends the current term, if any; resolves when onStoppedLeading has. Never rejects. */
  #endTerm(): Promise<void> {
    const term = this.#term;
    if (term === undefined) return this.#stopping;
    this.#term = undefined;
    clearTimeout(term.deadline);
    term.controller.abort(new Error(`leadership of lease ${this.#ref.namespace}/${this.#ref.name} ended`));
    this.#stopping = (async () => {
      try {
        await this.#onStoppedLeading();
      } catch (err) {
        this.#onError(err);
      }
    })();
    return this.#stopping;
  }
}

/**
 * The LeaseApi over a cluster's coordination.k8s.io/v1 API. A write refused with 429 is made again
 * after its Retry-After (operator/kube/throttle.ts) while `throttle.deadlineMs` allows: give it
 * the renew deadline, past which the elector gives the attempt up anyway.
 */
export function leaseApiFromKubeConfig(
  kc: KubeConfig,
  throttle: Pick<ThrottleOptions, 'throttled' | 'deadlineMs'> = {},
): LeaseApi {
  const api = kc.makeApiClient(CoordinationV1Api);
  return {
    get: (ref) =>
      withStatus(`get lease ${ref.namespace}/${ref.name}`, async () => {
        try {
          return fromV1(await api.readNamespacedLease(ref));
        } catch (err) {
          if (err instanceof ApiException && err.code === 404) return undefined;
          throw err;
        }
      }),
    create: ({ spec, ...ref }) =>
      withStatus(`create lease ${ref.namespace}/${ref.name}`, async () =>
        fromV1(
          await withThrottleRetry(
            'create',
            'leases',
            () => api.createNamespacedLease({ namespace: ref.namespace, body: toV1(ref, spec) }),
            throttle,
          ),
        ),
      ),
    // A PUT of the whole object: the Lease belongs to the elector, and labels or annotations put on
    // it by hand do not survive a renewal.
    replace: ({ spec, resourceVersion, ...ref }) =>
      withStatus(`replace lease ${ref.namespace}/${ref.name}`, async () =>
        fromV1(
          await withThrottleRetry(
            'update',
            'leases',
            () => api.replaceNamespacedLease({ ...ref, body: toV1(ref, spec, resourceVersion) }),
            throttle,
          ),
        ),
      ),
  };
}

async function withStatus<T>(what: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    if (!(err instanceof ApiException)) throw err;
    throw new LeaseApiError(err.code, `${what}: HTTP ${err.code}${statusMessage(err.body)}`, { cause: err });
  }
}

/** The message of the metav1.Status the API server sends with an error, when there is one. */
function statusMessage(body: unknown): string {
  let status = body;
  if (typeof body === 'string') {
    try {
      status = JSON.parse(body);
    } catch {
      return '';
    }
  }
  const message = (status as { message?: unknown } | null)?.message;
  return typeof message === 'string' ? `: ${message}` : '';
}

function fromV1(lease: V1Lease): Lease {
  const spec = lease.spec;
  return {
    metadata: { resourceVersion: lease.metadata?.resourceVersion ?? '' },
    spec: {
      holderIdentity: spec?.holderIdentity ?? '',
      leaseDurationSeconds: spec?.leaseDurationSeconds,
      acquireTime: millis(spec?.acquireTime),
      renewTime: millis(spec?.renewTime),
      leaseTransitions: spec?.leaseTransitions ?? 0,
    },
  };
}

/** The client types MicroTime fields as Dates but hands back the wire string; both are accepted. */
function millis(time: unknown): number | undefined {
  if (time instanceof Date) return time.getTime();
  if (typeof time !== 'string') return undefined;
  const ms = Date.parse(time);
  return Number.isNaN(ms) ? undefined : ms;
}

function toV1(ref: LeaseRef, spec: LeaseSpec, resourceVersion?: string): V1Lease {
  // V1MicroTime serialises with the six fractional digits metav1.MicroTime requires.
  const time = (ms: number | undefined) => (ms === undefined ? undefined : new V1MicroTime(ms));
  const acquireTime = time(spec.acquireTime);
  const renewTime = time(spec.renewTime);
  return {
    apiVersion: 'coordination.k8s.io/v1',
    kind: 'Lease',
    metadata: { ...ref, ...(resourceVersion === undefined ? {} : { resourceVersion }) },
    spec: {
      holderIdentity: spec.holderIdentity,
      leaseTransitions: spec.leaseTransitions,
      ...(spec.leaseDurationSeconds === undefined ? {} : { leaseDurationSeconds: spec.leaseDurationSeconds }),
      ...(acquireTime === undefined ? {} : { acquireTime }),
      ...(renewTime === undefined ? {} : { renewTime }),
    },
  };
}
