#!/usr/bin/env node
// Writes one sample to a remote-write URL and exits 0 when the answer is what was expected: the
// chart's `helm test` hook (charts/cardinal/templates/tests/write-sample.yaml) runs it from the
// proxy image against the proxy Service.
//
//   node dist/proxy/tools/write-sample.js URL [--ca-file FILE] [--expect-status N]
//
// The sample is cardinal_helm_test_sample{source="helm-test"} 1 at the current time, as remote
// write 1.0 (snappy-compressed prometheus.WriteRequest). Without --expect-status any 2xx passes.

import { readFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { parseArgs } from 'node:util';
import { encodeWriteRequestV1 } from '../codec/proto.js';
import { snappyEncode } from '../codec/snappy.js';

const SAMPLE_METRIC = 'cardinal_helm_test_sample';

/** The request body: one series, one sample at `nowMs`. */
function sampleBody(nowMs: number): Buffer {
  return snappyEncode(
    encodeWriteRequestV1({
      timeseries: [
        {
          labels: [
            { name: '__name__', value: SAMPLE_METRIC },
            { name: 'source', value: 'helm-test' },
          ],
          samples: [{ value: 1, timestamp: nowMs }],
          exemplars: [],
          histograms: [],
        },
      ],
      metadata: [],
    }),
  );
}

function post(url: URL, body: Buffer, ca: string | undefined): Promise<{ status: number; text: string }> {
  const request = url.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method: 'POST',
        timeout: 10_000,
        headers: {
          'content-type': 'application/x-protobuf',
          'content-encoding': 'snappy',
          'x-prometheus-remote-write-version': '0.1.0',
          'content-length': body.length,
        },
        ...(ca === undefined ? {} : { ca }),
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.once('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            text: Buffer.concat(chunks).toString('utf8').slice(0, 500),
          }),
        );
        res.once('error', reject);
      },
    );
    req.once('timeout', () => req.destroy(new Error('no answer within 10s')));
    req.once('error', reject);
    req.end(body);
  });
}

async function main(argv: string[]): Promise<number> {
  let parsed: ReturnType<typeof parse>;
  const parse = (args: string[]) =>
    parseArgs({
      args,
      allowPositionals: true,
      options: { 'ca-file': { type: 'string' }, 'expect-status': { type: 'string' } },
    });
  try {
    parsed = parse(argv);
  } catch (err) {
    process.stderr.write(`write-sample: ${(err as Error).message}\n`);
    return 2;
  }
  const [target] = parsed.positionals;
  if (target === undefined || parsed.positionals.length !== 1) {
    process.stderr.write('usage: write-sample URL [--ca-file FILE] [--expect-status N]\n');
    return 2;
  }
  const expect = parsed.values['expect-status'];
  const caFile = parsed.values['ca-file'];
  try {
    const res = await post(
      new URL(target),
      sampleBody(Date.now()),
      caFile === undefined ? undefined : readFileSync(caFile, 'utf8'),
    );
    const ok = expect === undefined ? res.status >= 200 && res.status < 300 : String(res.status) === expect;
    process.stdout.write(
      `write-sample: POST ${target}: HTTP ${res.status}${res.text === '' ? '' : `: ${res.text.trim()}`}\n`,
    );
    if (!ok) process.stderr.write(`write-sample: wanted ${expect ?? 'a 2xx status'}\n`);
    return ok ? 0 : 1;
  } catch (err) {
    process.stderr.write(`write-sample: POST ${target}: ${(err as Error).message}\n`);
    return 1;
  }
}

main(process.argv.slice(2)).then((code) => process.exit(code));
