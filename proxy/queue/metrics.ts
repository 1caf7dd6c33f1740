import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

/** Why queued data was dropped instead of reaching the upstream. A fixed set: label values. */
export type DropReason =
  /** The upstream answered a status that is not retried (by default every 4xx but 429). */
  | 'rejected'
  /** A single series the upstream still refused with 413. */
  | 'too_large'
  /** The queue was full and --queue.full-policy=drop-oldest made room. */
  | 'full'
  /** Records behind a corrupt or torn place in a segment. */
  | 'corrupt'
  /**
   * Refused by the upstream as out of order, out of bounds or a duplicate: samples of a series
   * older than ones it already holds (parallel senders, or data the upstream took before a retry).
   */
  | 'out_of_order'
  /** Kept failing with a retryable status beyond --queue.max-retry-age or --queue.max-retry-attempts. */
  | 'retry_exhausted'
  /** A dead letter deleted to keep the dead-letter directory within its bound. */
  | 'dead_letter_full'
  /** A dead letter deleted through the API. */
  | 'discarded';

export const DROP_REASONS: readonly DropReason[] = [
  'rejected',
  'too_large',
  'full',
  'corrupt',
  'out_of_order',
  'retry_exhausted',
  'dead_letter_full',
  'discarded',
];

/** What the queue and its drain loop report; implemented by createQueueMetrics. */
export interface QueueMetrics {
  appended(samples: number): void;
  /** A request refused because the queue was full (nothing of it was enqueued). */
  refused(samples: number): void;
  dropped(reason: DropReason, records: number, samples: number): void;
  sent(records: number, samples: number): void;
  retried(reason: string): void;
  corruption(kind: 'checksum' | 'length' | 'payload' | 'truncated' | 'header' | 'ack'): void;
  fsync(seconds: number, records: number): void;
}

/** Point-in-time state the gauges read when /metrics is scraped. */
export interface QueueGauges {
  readonly bytes: number;
  readonly maxBytes: number;
  readonly segments: number;
  readonly oldestAgeSeconds: number;
  readonly full: boolean;
  readonly diskFull: boolean;
}

/** The queues a proxy may run: one per upstream, labelled `queue` on every queue metric. */
export type QueueName = 'remote_write' | 'pushgateway';

/**
 * The durable queues' metrics, `cardinal_proxy_queue_*`, labelled by queue. "Samples" counts float
 * samples and histogram samples together, as the counters in the queue's records do (a push counts
 * its samples). Returns the metrics of one queue for each name it is called with.
 */
export function createQueueMetrics(
  registry: Registry,
): (queue: QueueName) => QueueMetrics & { observe(gauges: () => QueueGauges): void } {
  const readers = new Map<QueueName, () => QueueGauges>();
  // --workers N: each worker has its own queue; /metrics sums sizes and shows the largest of the rest.
  const gauge = (
    name: string,
    help: string,
    pick: (g: QueueGauges) => number,
    aggregator: 'sum' | 'max' = 'max',
  ) =>
    new Gauge({
      name,
      help,
      labelNames: ['queue'],
      registers: [registry],
      aggregator,
      collect() {
        for (const [queue, read] of readers) this.labels(queue).set(pick(read()));
      },
    });
  gauge('cardinal_proxy_queue_bytes', 'Bytes of segment files on disk.', (g) => g.bytes, 'sum');
  gauge('cardinal_proxy_queue_max_bytes', 'The --queue.max-bytes limit.', (g) => g.maxBytes, 'sum');
  gauge('cardinal_proxy_queue_segments', 'Segment files on disk.', (g) => g.segments, 'sum');
  gauge(
    'cardinal_proxy_queue_oldest_age_seconds',
    'Age of the oldest entry not yet delivered upstream; 0 when the queue is drained.',
    (g) => g.oldestAgeSeconds,
  );
  gauge(
    'cardinal_proxy_queue_full',
    '1 while the queue refuses requests because it is full (/-/ready answers 503 then).',
    (g) => (g.full ? 1 : 0),
  );
  gauge(
    'cardinal_proxy_queue_disk_full',
    '1 while the queue refuses appends because its file system is full; it ends by itself once there is room.',
    (g) => (g.diskFull ? 1 : 0),
  );
  const appended = new Counter({
    name: 'cardinal_proxy_queue_appended_samples_total',
    help: 'Samples written to the queue (acknowledged to senders).',
    labelNames: ['queue'],
    registers: [registry],
  });
  const refused = new Counter({
    name: 'cardinal_proxy_queue_refused_samples_total',
    help: 'Samples of requests refused because the queue was full; their senders were told to retry.',
    labelNames: ['queue'],
    registers: [registry],
  });
  const refusedRequests = new Counter({
    name: 'cardinal_proxy_queue_refused_requests_total',
    help: 'Requests refused because the queue was full.',
    labelNames: ['queue'],
    registers: [registry],
  });
  const droppedSamples = new Counter({
    name: 'cardinal_proxy_queue_dropped_samples_total',
    help: 'Queued samples that will not reach the upstream, by reason (rejected, too_large, full, corrupt, out_of_order, retry_exhausted, dead_letter_full, discarded). Kept in the queue directory: does not reset on restart.',
    labelNames: ['queue', 'reason'],
    registers: [registry],
  });
  const droppedRecords = new Counter({
    name: 'cardinal_proxy_queue_dropped_records_total',
    help: 'Queued records (accepted requests) dropped in whole or in part, by reason.',
    labelNames: ['queue', 'reason'],
    registers: [registry],
  });
  const sentSamples = new Counter({
    name: 'cardinal_proxy_queue_sent_samples_total',
    help: 'Queued samples the upstream accepted.',
    labelNames: ['queue'],
    registers: [registry],
  });
  const sentRequests = new Counter({
    name: 'cardinal_proxy_queue_sent_requests_total',
    help: 'Requests from the queue the upstream accepted (each may carry many queued records).',
    labelNames: ['queue'],
    registers: [registry],
  });
  const sentRecords = new Counter({
    name: 'cardinal_proxy_queue_sent_records_total',
    help: 'Queued records delivered upstream.',
    labelNames: ['queue'],
    registers: [registry],
  });
  const retries = new Counter({
    name: 'cardinal_proxy_queue_retries_total',
    help: 'Attempts from the queue that failed in a way that is retried, by reason (status or network error).',
    labelNames: ['queue', 'reason'],
    registers: [registry],
  });
  const corruptions = new Counter({
    name: 'cardinal_proxy_queue_corruptions_total',
    help: 'Corrupt or torn places found in queue files, by kind (checksum, length, payload, truncated, header, ack).',
    labelNames: ['queue', 'kind'],
    registers: [registry],
  });
  const fsyncs = new Histogram({
    name: 'cardinal_proxy_queue_fsync_duration_seconds',
    help: 'Duration of one group commit: write and fdatasync of every record appended meanwhile.',
    labelNames: ['queue'],
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [registry],
  });
  const fsyncRecords = new Counter({
    name: 'cardinal_proxy_queue_fsync_records_total',
    help: 'Records made durable by group commits; divided by the fsync count, records per fsync.',
    labelNames: ['queue'],
    registers: [registry],
  });
  return (queue) => {
    for (const reason of DROP_REASONS) {
      droppedSamples.labels(queue, reason).inc(0);
      droppedRecords.labels(queue, reason).inc(0);
    }
    return {
      observe(gauges) {
        readers.set(queue, gauges);
      },
      appended(samples) {
        appended.labels(queue).inc(samples);
      },
      refused(samples) {
        refused.labels(queue).inc(samples);
        refusedRequests.labels(queue).inc();
      },
      dropped(reason, records, samples) {
        droppedSamples.labels(queue, reason).inc(samples);
        droppedRecords.labels(queue, reason).inc(records);
      },
      sent(records, samples) {
        sentSamples.labels(queue).inc(samples);
        sentRequests.labels(queue).inc();
        sentRecords.labels(queue).inc(records);
      },
      retried(reason) {
        retries.labels(queue, reason).inc();
      },
      corruption(kind) {
        corruptions.labels(queue, kind).inc();
      },
      fsync(seconds, records) {
        fsyncs.labels(queue).observe(seconds);
        fsyncRecords.labels(queue).inc(records);
      },
    };
  };
}
