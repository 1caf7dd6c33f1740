// The validating admission webhook's decision (Kubernetes "Dynamic Admission Control",
// admission.k8s.io/v1 AdmissionReview): a MetricPolicy is admitted when the proxy's own validator
// accepts it, exactly as the reconcile judges it (validatePolicy, instanceProblem), so `kubectl
// apply` of a policy the operator would mark Accepted=False fails with the same message.

import type { MetricPolicy } from '../api/types.js';
import { validatePolicy } from '../controller/reconcile.js';
import { INSTANCE_LABEL, instanceProblem, selectInstance } from '../render/instance.js';

export interface AdmissionResponse {
  readonly apiVersion: 'admission.k8s.io/v1';
  readonly kind: 'AdmissionReview';
  readonly response: {
    readonly uid: string;
    readonly allowed: boolean;
    readonly status?: { readonly code: number; readonly reason: string; readonly message: string };
  };
}

/** Why a body is not an AdmissionReview this webhook can answer; the server answers 400. */
export class ReviewError extends Error {
  override name = 'ReviewError';
}

interface Request {
  uid: string;
  name?: string;
  namespace?: string;
  operation?: string;
  object?: { apiVersion?: string; kind?: string; metadata?: Record<string, unknown>; spec?: unknown };
}

/** The answer to one AdmissionReview; throws ReviewError when `body` is not one. */
export function reviewPolicy(body: unknown): AdmissionResponse {
  const review = body as { apiVersion?: unknown; kind?: unknown; request?: Request } | null;
  if (review === null || typeof review !== 'object' || review.kind !== 'AdmissionReview')
    throw new ReviewError('not an AdmissionReview');
  if (review.apiVersion !== 'admission.k8s.io/v1')
    throw new ReviewError(`AdmissionReview ${String(review.apiVersion)}: only admission.k8s.io/v1 is served`);
  const request = review.request;
  if (request === undefined || typeof request.uid !== 'string' || request.uid === '')
    throw new ReviewError('AdmissionReview without request.uid');
  const answer = (allowed: boolean, message?: string): AdmissionResponse => ({
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    response: {
      uid: request.uid,
      allowed,
      ...(message === undefined ? {} : { status: { code: 422, reason: 'Invalid', message } }),
    },
  });
  const object = request.object;
  // Only CREATE and UPDATE are registered; anything else (or no object) is not ours to refuse.
  if (object === undefined || object.kind !== 'MetricPolicy') return answer(true);
  const metadata = object.metadata ?? {};
  const policy = {
    apiVersion: 'cardinal.dev/v1alpha1',
    kind: 'MetricPolicy',
    metadata: {
      name: String(metadata.name ?? request.name ?? metadata.generateName ?? ''),
      namespace: String(metadata.namespace ?? request.namespace ?? ''),
      generation: 1,
    },
    spec: (object.spec ?? {}) as MetricPolicy['spec'],
  } satisfies MetricPolicy;
  const instance = instanceProblem(selectInstance(policy));
  if (instance !== undefined)
    return answer(false, `spec.proxySelector.matchLabels["${INSTANCE_LABEL}"]: ${instance}`);
  const verdict = validatePolicy(policy);
  return verdict.ok ? answer(true) : answer(false, verdict.message);
}
