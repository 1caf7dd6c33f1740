// The in-tree stages, in the order they run within a policy, each with the MetricPolicy spec field
// that configures it. A new capability is one more stage file and one line here; its schema
// fragment is the spec field's (crds/metric-policy.ts, the one schema source).

import type { MetricPolicySpecT } from '../../../crds/metric-policy.js';
import type { Stage } from '../stage.js';
import { dropStage } from './drop.js';
import { limitsStage } from './limits/index.js';
import { matchStage } from './match.js';
import { relabelStage } from './relabel.js';
import { standardsStage } from './standards.js';
import { unusedStage } from './unused.js';

export interface InTreeStage {
  readonly field: keyof MetricPolicySpecT;
  readonly stage: Stage;
}

/** Label stages first, in their order; then the series stages, which run after every policy's label stages. */
export const STAGES: readonly InTreeStage[] = [
  { field: 'match', stage: matchStage as Stage },
  { field: 'relabel', stage: relabelStage as Stage },
  { field: 'drop', stage: dropStage as Stage },
  { field: 'unused', stage: unusedStage as Stage },
  { field: 'standards', stage: standardsStage as Stage },
  { field: 'limits', stage: limitsStage as Stage },
];
