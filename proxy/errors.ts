// Every rejection a client of the proxy can see, in one table: a stable code, the HTTP status the
// implemented spec prescribes, and a message. Codes appear in logs and in the `reason` label of
// the proxy's own metrics, so they are a fixed, bounded set.
//
// Remote-write 1.0 ("Retries & Backoff") and 2.0 ("Retries & Backoff", "Content negotiation"):
// 4xx means the request must not be retried, 5xx and 429 mean it may be; 415 answers an
// unsupported Content-Type or Content-Encoding.

export const errorTable = {
  UNSUPPORTED_CONTENT_TYPE: { status: 415, message: 'unsupported Content-Type' },
  UNSUPPORTED_ENCODING: { status: 415, message: 'unsupported Content-Encoding' },
  BODY_TOO_LARGE: { status: 413, message: 'request body too large' },
  MALFORMED_SNAPPY: { status: 400, message: 'body is not a valid snappy block' },
  MALFORMED_PROTOBUF: { status: 400, message: 'body is not a valid protobuf message' },
  INVALID_WRITE_REQUEST: { status: 400, message: 'invalid write request' },
  // The door check (proxy/codec/check.ts): a series the receiver would refuse. Remote-write 2.0
  // "Invalid Samples": 400, and the sender must not retry it.
  INVALID_SERIES: { status: 400, message: 'series a receiver would refuse' },
  UPSTREAM_REJECTED: { status: 400, message: 'upstream rejected the request' },
  UPSTREAM_UNSUPPORTED: { status: 415, message: 'upstream does not accept this protobuf message' },
  UPSTREAM_UNAVAILABLE: { status: 503, message: 'upstream unavailable, retries exhausted' },
  // Pushgateway API: a push it cannot take is a 400; the proxy's own refusals follow suit.
  INVALID_GROUPING_KEY: { status: 400, message: 'invalid grouping key' },
  INVALID_PUSH: { status: 400, message: 'invalid push' },
  PUSHGATEWAY_UNAVAILABLE: { status: 503, message: 'pushgateway unavailable, retries exhausted' },
  // RFC 9110 section 15.5.2 and 15.5.4: 401 carries a WWW-Authenticate challenge; 403 means the
  // credentials are valid but do not allow this request.
  UNAUTHORIZED: { status: 401, message: 'unauthorized' },
  // RFC 9112 section 3.2: only origin-form targets are served (see proxy/auth/target.ts).
  BAD_REQUEST_TARGET: { status: 400, message: 'bad request target' },
  // RFC 6585 section 4: a reload asked for again before --reload.min-interval passed.
  TOO_MANY_RELOADS: { status: 429, message: 'too many reloads' },
  FORBIDDEN: { status: 403, message: 'forbidden' },
  SHUTTING_DOWN: { status: 503, message: 'proxy is shutting down' },
  // Overload protection (--max-inflight-requests, --max-inflight-bytes): 503 with Retry-After, which
  // every remote-write sender retries (remote-write 1.0 and 2.0, "Retries & Backoff"; a 429 is
  // not retried by Prometheus unless retry_on_http_429 is set).
  OVERLOADED: { status: 503, message: 'too many requests in flight, retry later' },
  // A stage plugin failed (threw, or ran out of --stage.plugin.timeout) and its failure mode is
  // refuse: 503, so the sender retries the request rather than it being forwarded half-governed.
  STAGE_FAILED: { status: 503, message: 'a stage plugin failed, retry later' },
  // The sender closed its connection before it was answered: nothing more is done for it, and it
  // never sees this status (it is counted under it).
  SENDER_GONE: { status: 499, message: 'the sender went away before it was answered' },
  // The durable queue (--queue.dir). Full: nothing of the request was enqueued; the answer carries
  // Retry-After, and --queue.full-status chooses 429 or 503 (both are retried by senders).
  QUEUE_FULL: { status: 429, message: 'queue full, retry later' },
  QUEUE_FULL_UNAVAILABLE: { status: 503, message: 'queue full, retry later' },
  QUEUE_RECORD_TOO_LARGE: { status: 413, message: 'request larger than the whole queue' },
  QUEUE_WRITE_FAILED: { status: 503, message: 'writing to the queue failed' },
  QUEUE_DISK_FULL: { status: 503, message: 'queue disk full, retry later' },
} as const satisfies Record<string, { status: number; message: string }>;

export type ErrorCode = keyof typeof errorTable;

export class CardinalError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  /** Sent as Retry-After with the answer (RFC 9110 section 10.2.3), when set. */
  readonly retryAfterSeconds: number | undefined;

  /** `detail` says what exactly is wrong and where, in one line; it is appended to the message. */
  constructor(
    code: ErrorCode,
    detail?: string,
    options?: ErrorOptions & { readonly retryAfterSeconds?: number | undefined },
  ) {
    const base = errorTable[code].message;
    super(detail ? `${base}: ${detail}` : base, options);
    this.name = 'CardinalError';
    this.code = code;
    this.status = errorTable[code].status;
    this.retryAfterSeconds = options?.retryAfterSeconds;
  }
}

export function isCardinalError(err: unknown): err is CardinalError {
  return err instanceof CardinalError;
}
