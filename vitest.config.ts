import { defineConfig } from 'vitest/config';

// Two projects: unit tests sit beside the code and run in parallel; integration and end-to-end
// tests in test/ start real programs on loopback, so they run one file at a time.
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: [
            'proxy/**/*.test.ts',
            'operator/**/*.test.ts',
            'cli/**/*.test.ts',
            'crds/**/*.test.ts',
            'policy/**/*.test.ts',
            'lib/**/*.test.ts',
            'examples/**/*.test.ts',
            'hack/**/*.test.ts',
          ],
          environment: 'node',
          // Property tests run hundreds of cases; on a shared 2-core machine the default 5 s is
          // too little for a few of them. No test asserts a time.
          testTimeout: 30_000,
        },
      },
      {
        test: {
          name: 'integration',
          include: ['test/**/*.test.ts'],
          exclude: ['test/cluster/**'],
          environment: 'node',
          globalSetup: ['test/framework/global-setup.ts'],
          // Every proxy a test starts is one process unless the test asks for --workers (the flag
          // beats the variable): the default would follow this machine's CPUs.
          env: { CARDINAL_WORKERS: '1' },
          fileParallelism: false,
          testTimeout: 180_000,
          hookTimeout: 300_000,
        },
      },
      {
        // A real node (hack/cluster.sh): the chart's pods from the images built here. One file at
        // a time, since one cluster runs per machine; a first run builds the images (see README).
        test: {
          name: 'cluster',
          include: ['test/cluster/**/*.test.ts'],
          // After the other projects: the node's pods would compete with them for the CPU.
          sequence: { groupOrder: 1 },
          environment: 'node',
          fileParallelism: false,
          testTimeout: 600_000,
          hookTimeout: 3_600_000,
        },
      },
    ],
  },
});
