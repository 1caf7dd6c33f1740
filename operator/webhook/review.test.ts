import { describe, expect, it } from 'vitest';
import { ReviewError, reviewPolicy } from './review.js';

const review = (spec: unknown, metadata: Record<string, unknown> = { name: 'p', namespace: 'team-a' }) => ({
  apiVersion: 'admission.k8s.io/v1',
  kind: 'AdmissionReview',
  request: {
    uid: 'abc',
    operation: 'CREATE',
    object: { apiVersion: 'cardinal.dev/v1alpha1', kind: 'MetricPolicy', metadata, spec },
  },
});

describe('the webhook\u2019s review', () => {
  it('admits a policy the proxy accepts, echoing the uid', () => {
    expect(reviewPolicy(review({ drop: ['debug_.*'] }))).toEqual({
      apiVersion: 'admission.k8s.io/v1',
      kind: 'AdmissionReview',
      response: { uid: 'abc', allowed: true },
    });
  });

  it.each([
    ['a regex RE2 refuses', { drop: ['(?=x)'] }, /^spec\.drop\[0\]: /],
    ['an invalid selector', { match: { selector: '{job=' } }, /^spec\.match\.selector: /],
    [
      'a bad proxy instance',
      { proxySelector: { matchLabels: { 'cardinal.dev/proxy-instance': 'Not_A_Label' } } },
      /^spec\.proxySelector\.matchLabels\["cardinal\.dev\/proxy-instance"\]: proxy instance "Not_A_Label"/,
    ],
  ])('refuses %s with the validator\u2019s message', (_name, spec, message) => {
    const answer = reviewPolicy(review(spec));
    expect(answer.response.allowed).toBe(false);
    expect(answer.response.status?.code).toBe(422);
    expect(answer.response.status?.message).toMatch(message);
  });

  it.each([
    ['null', null],
    ['another kind', { kind: 'Pod' }],
    ['v1beta1', { ...review({}), apiVersion: 'admission.k8s.io/v1beta1' }],
    ['no uid', { ...review({}), request: {} }],
  ])('refuses to answer %s', (_name, body) => {
    expect(() => reviewPolicy(body)).toThrow(ReviewError);
  });
});
