import { describe, expect, it } from 'vitest';
import { parseTopOffendersReport } from '../operator/status/offenders.js';
import { MetricInterner } from '../proxy/pipeline/cardinality.js';
import { TopOffenders } from '../proxy/stats/top-offenders.js';

// The contract between the programs: what the proxy's statistics API answers, the operator reads.
const A = 'team-a/limits';

describe('the top-offenders report', () => {
  it('the operator accepts what the proxy answers', () => {
    const interner = new MetricInterner({ capacity: 8 });
    const top = new TopOffenders({
      metrics: interner,
      series: [],
      labels: [],
      policies: [A],
      reasons: ['series_limit'],
    });
    top.recordDrop(interner.internString('http_requests_total'), 0, 0, 12);
    const json: unknown = JSON.parse(JSON.stringify(top.topOffenders(10)));
    expect(parseTopOffendersReport(json)).toEqual({
      metrics: [],
      labels: [],
      drops: [{ metric: 'http_requests_total', policy: A, reason: 'series_limit', samples: 12 }],
    });
  });
});
