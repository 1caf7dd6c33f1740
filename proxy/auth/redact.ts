import type { LoggerOptions } from 'pino';

/**
 * pino's redaction of credentials, for the proxy's logger: everywhere fastify or the proxy might
 * log a request or its headers (fastify's request serializer logs no headers today; this keeps
 * it so should a log line ever carry the request or its headers).
 */
export const REDACT = {
  paths: [
    'req.headers.authorization',
    'req.headers["proxy-authorization"]',
    'request.headers.authorization',
    'request.headers["proxy-authorization"]',
    'headers.authorization',
    'headers["proxy-authorization"]',
    'err.headers.authorization',
    'authorization',
  ],
  censor: '[redacted]',
} satisfies LoggerOptions['redact'];
