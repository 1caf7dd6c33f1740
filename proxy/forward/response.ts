// What both forwarders read of an upstream's answer: a bounded piece of an error body, and a
// bounded reason for a failed attempt.

/** Reads at most `limit` bytes of a body: enough for a reason, bounded whatever the upstream sends. */
export async function readSome(
  body: AsyncIterable<Uint8Array> & { destroy(): unknown },
  limit: number,
): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    chunks.push(Buffer.from(chunk));
    size += chunk.length;
    if (size >= limit) {
      body.destroy();
      break;
    }
  }
  return Buffer.concat(chunks).subarray(0, limit).toString('utf8');
}

/** A bounded set of reasons for the `reason` label: error codes, never messages. */
export function errorReason(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    if (
      err.name === 'TimeoutError' ||
      code === 'UND_ERR_HEADERS_TIMEOUT' ||
      code === 'UND_ERR_BODY_TIMEOUT'
    ) {
      return 'timeout';
    }
    if (typeof code === 'string' && /^[A-Z_]{3,40}$/.test(code)) return code.toLowerCase();
  }
  return 'network';
}
