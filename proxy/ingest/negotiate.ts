import { CardinalError } from '../errors.js';

/** The remote-write protocol versions the proxy speaks on both sides. */
export type ProtocolVersion = '1.0' | '2.0';

/** The protobuf message names of the `proto` Content-Type parameter (remote-write 2.0, "Protocol"). */
export const MESSAGE_V1 = 'prometheus.WriteRequest';
export const MESSAGE_V2 = 'io.prometheus.write.v2.Request';

export const contentTypeFor: Readonly<Record<ProtocolVersion, string>> = {
  '1.0': `application/x-protobuf;proto=${MESSAGE_V1}`,
  '2.0': `application/x-protobuf;proto=${MESSAGE_V2}`,
};

/** X-Prometheus-Remote-Write-Version values a sender of each version sets. */
export const versionHeaderFor: Readonly<Record<ProtocolVersion, string>> = {
  '1.0': '0.1.0',
  '2.0': '2.0.0',
};

/**
 * Picks the protocol version from the request headers, as remote-write 2.0 "Content negotiation"
 * prescribes: `Content-Type: application/x-protobuf` with an optional `proto=` parameter naming the
 * message (absent means `prometheus.WriteRequest`), and `Content-Encoding: snappy`.
 *
 * Like Prometheus's own receiver, a request with no Content-Type or no Content-Encoding is taken
 * as a remote-write 1.0 snappy body, because early 1.0 senders omitted them. Anything else that
 * is named and not supported is a 415, which tells a 2.0 sender to fall back to 1.0.
 */
export function negotiate(
  contentType: string | undefined,
  contentEncoding: string | undefined,
): ProtocolVersion {
  const encoding = contentEncoding?.trim().toLowerCase();
  if (encoding !== undefined && encoding !== '' && encoding !== 'snappy') {
    throw new CardinalError(
      'UNSUPPORTED_ENCODING',
      `"${clip(contentEncoding ?? '')}"; only snappy is supported`,
    );
  }
  if (contentType === undefined || contentType.trim() === '') return '1.0';

  const [mediaType = '', ...params] = contentType.split(';');
  if (mediaType.trim().toLowerCase() !== 'application/x-protobuf') {
    throw new CardinalError(
      'UNSUPPORTED_CONTENT_TYPE',
      `"${clip(contentType)}"; expected application/x-protobuf with proto=${MESSAGE_V1} or proto=${MESSAGE_V2}`,
    );
  }
  let proto = MESSAGE_V1;
  for (const param of params) {
    const eq = param.indexOf('=');
    if (eq < 0) continue;
    if (param.slice(0, eq).trim().toLowerCase() === 'proto') {
      proto = param
        .slice(eq + 1)
        .trim()
        .replace(/^"(.*)"$/, '$1');
    }
  }
  if (proto === MESSAGE_V1) return '1.0';
  if (proto === MESSAGE_V2) return '2.0';
  throw new CardinalError(
    'UNSUPPORTED_CONTENT_TYPE',
    `proto=${clip(proto)} is not supported; expected ${MESSAGE_V1} or ${MESSAGE_V2}`,
  );
}

/** Header values are echoed in error messages; keep them short and printable. */
function clip(value: string): string {
  const printable = value.replace(/[^\x20-\x7e]/g, '?');
  return printable.length > 100 ? `${printable.slice(0, 100)}...` : printable;
}
