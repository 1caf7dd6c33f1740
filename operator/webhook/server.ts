// The webhook's HTTPS listener: POST /validate-metricpolicy with an AdmissionReview, answered by
// reviewPolicy. The API server is the only client; it verifies this certificate against the
// caBundle of the ValidatingWebhookConfiguration. The certificate can be replaced while serving
// (a rotation): new connections get the new one.

import { createServer, type Server } from 'node:https';
import type { Logger } from 'pino';
import { type AdmissionResponse, ReviewError, reviewPolicy } from './review.js';

export const VALIDATE_PATH = '/validate-metricpolicy';

export interface WebhookServerOptions {
  readonly host: string;
  readonly port: number;
  readonly cert: string | Buffer;
  readonly key: string | Buffer;
  readonly logger: Logger;
  /** The largest AdmissionReview read; the API server's own request limit is 3 MiB. Default 4 MiB. */
  readonly maxBodyBytes?: number;
}

export class WebhookServer {
  readonly #server: Server;
  readonly #options: WebhookServerOptions;

  constructor(options: WebhookServerOptions) {
    this.#options = options;
    const limit = options.maxBodyBytes ?? 4 * 1024 * 1024;
    this.#server = createServer(
      { cert: options.cert, key: options.key, minVersion: 'TLSv1.2' },
      (req, res) => {
        const reply = (status: number, body: string, type = 'text/plain; charset=utf-8') => {
          res.writeHead(status, { 'content-type': type });
          res.end(body);
        };
        const path = (req.url ?? '/').split('?')[0];
        if (path !== VALIDATE_PATH) return reply(404, 'not found\n');
        if (req.method !== 'POST') return reply(405, 'method not allowed\n');
        if (!/^application\/json\b/i.test(req.headers['content-type'] ?? ''))
          return reply(415, 'want Content-Type: application/json\n');
        const chunks: Buffer[] = [];
        let size = 0;
        req.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > limit) {
            reply(413, `AdmissionReview larger than ${limit} bytes\n`);
            req.destroy();
            return;
          }
          chunks.push(chunk);
        });
        req.on('end', () => {
          let answer: AdmissionResponse;
          try {
            answer = reviewPolicy(JSON.parse(Buffer.concat(chunks).toString('utf8')));
          } catch (err) {
            if (err instanceof SyntaxError || err instanceof ReviewError)
              return reply(400, `${(err as Error).message}\n`);
            options.logger.error({ err }, 'webhook: reviewing a MetricPolicy failed');
            return reply(500, 'internal error\n');
          }
          if (!answer.response.allowed) {
            options.logger.info(
              { uid: answer.response.uid, message: answer.response.status?.message },
              'webhook: refused a MetricPolicy',
            );
          }
          reply(200, JSON.stringify(answer), 'application/json');
        });
      },
    );
  }

  async listen(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(this.#options.port, this.#options.host, () => resolve());
    });
  }

  /** Serves `cert` and `key` to new connections from now on. */
  setCertificate(cert: string | Buffer, key: string | Buffer): void {
    this.#server.setSecureContext({ cert, key, minVersion: 'TLSv1.2' });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.#server.closeAllConnections();
      this.#server.close(() => resolve());
    });
  }
}
