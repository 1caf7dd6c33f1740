// A real, local Kubernetes control plane (etcd + kube-apiserver, no nodes) on loopback, the way
// envtest runs one. It is the TypeScript twin of hack/control-plane.sh: same binaries, same flags,
// same certificates, so a failure seen here can be reproduced by hand with the script.
//
// Binaries: kube-apiserver, etcd and kubectl from KUBEBUILDER_ASSETS (envtest's variable), which
// hack/deps.sh prints and hack/test.mjs exports. When it is unset, the cache that
// hack/kube-assets.sh builds into is tried, so that running vitest directly works too.
//
// With USE_EXISTING_CLUSTER=true (envtest's switch) nothing is started: the kubeconfig in force
// (${KUBECONFIG:-~/.kube/config}) is used as is, and close() leaves the cluster alone.
//
// What the directory holds:
//   etcd/, etcd.log, kube-apiserver.log
//   pki/ca.crt, ca.key        a throwaway CA (EC P-256, made with openssl)
//   pki/serving.crt, .key     kube-apiserver's serving cert: 127.0.0.1, ::1, localhost and the
//                             in-cluster names of the kubernetes Service
//   pki/admin.crt, .key       client cert CN=cardinal-admin, O=system:masters
//   pki/sa.key, sa.pub        the service-account token signing key pair
//   admin.token, tokens.csv   a static bearer token for the same admin user
//   kubeconfig                https://127.0.0.1:PORT, the CA and the admin cert, all embedded
//   kubectl-cache/            kubectl's discovery cache, kept out of ~/.kube
//
// etcd flags:
//   --listen-client-urls, --advertise-client-urls, --listen-peer-urls,
//   --initial-advertise-peer-urls, --initial-cluster   free loopback ports only; a one-member
//                             cluster still needs a peer URL, and it must name itself in
//                             --initial-cluster.
//   --unsafe-no-fsync=true    the data is thrown away, so durability buys nothing; fsync is what
//                             makes etcd slow on a busy CI disk (envtest does the same).
//   --log-level=warn          etcd logs every request at info.
//
// kube-apiserver flags:
//   --etcd-servers, --bind-address=127.0.0.1, --advertise-address=127.0.0.1, --secure-port
//                             loopback only; without --advertise-address the API server would
//                             pick the host's first non-loopback address.
//   --cert-dir, --tls-cert-file, --tls-private-key-file   our own serving cert, signed by our CA,
//                             so clients verify the server instead of skipping verification.
//   --client-ca-file          the admin client cert authenticates; O=system:masters puts the user
//                             in the group that every authorizer allows.
//   --token-auth-file         a static bearer token for clients that cannot present a cert.
//   --authorization-mode=RBAC as a real cluster: a test that forgets a Role fails here too.
//   --service-account-issuer, --service-account-key-file, --service-account-signing-key-file
//                             required since 1.20 even when no pod ever runs.
//   --service-cluster-ip-range=10.0.0.0/24   only allocates virtual IPs; nothing routes there.
//   --endpoint-reconciler-type=none   the kubernetes Service would otherwise get a loopback
//                             endpoint, which validation rejects, and the reconciler logs errors.
//   --allow-privileged=true   so tests may create any pod spec an operator renders.
//   --disable-admission-plugins=ServiceAccount   no controller-manager runs to create the default
//                             ServiceAccount, which the plugin would wait for on every pod.
//   --profiling=false         no /debug/pprof on a test server.

import { execFile, spawn } from 'node:child_process';
import { accessSync, constants, mkdtempSync, rmSync } from 'node:fs';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { request as httpsRequest } from 'node:https';
import { homedir, tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { type Closable, type CloseOptions, freePort, keepTmpRequested, Program } from './process.js';

const execFileAsync = promisify(execFile);

/** The Kubernetes version hack/kube-assets.sh builds when KUBE_VERSION is unset. */
const DEFAULT_KUBE_VERSION = '1.34.4';

export interface KubectlResult {
  stdout: string;
  stderr: string;
  /** The exit code; kubectl exits 1 on any error the API server returns. */
  code: number;
}

export interface KubectlOptions {
  /** Written to kubectl's stdin, for `-f -`. */
  input?: string;
  /** Kill kubectl after this long; default 60 s. */
  timeoutMs?: number;
}

export interface ControlPlane extends Closable {
  /** The kubeconfig file that reaches this API server with admin rights. */
  readonly kubeconfig: string;
  /** The API server's URL, e.g. https://127.0.0.1:34567. */
  readonly server: string;
  /** Runs the real kubectl against this API server. Never throws on a non-zero exit. */
  kubectl(args: readonly string[], options?: KubectlOptions): Promise<KubectlResult>;
  /** `kubectl apply -f -` with `yaml`; throws with kubectl's stderr when it fails. Returns stdout. */
  apply(yaml: string): Promise<string>;
}

export interface ControlPlaneOptions {
  /** How long kube-apiserver may take to answer /readyz with ok; default CONTROL_PLANE_TIMEOUT s or 60 s. */
  readyTimeoutMs?: number;
}

/** Paths of the control plane binaries. */
export interface KubeAssets {
  kubeApiserver: string;
  etcd: string;
  kubectl: string;
}

function isExecutable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function assetsIn(dir: string): KubeAssets | undefined {
  const assets = {
    kubeApiserver: join(dir, 'kube-apiserver'),
    etcd: join(dir, 'etcd'),
    kubectl: join(dir, 'kubectl'),
  };
  return Object.values(assets).every(isExecutable) ? assets : undefined;
}

/**
 * The control plane binaries: KUBEBUILDER_ASSETS when set (and then it must hold all three), else
 * the directory hack/kube-assets.sh builds into.
 */
export function kubeAssets(): KubeAssets {
  const fromEnv = process.env.KUBEBUILDER_ASSETS;
  if (fromEnv !== undefined && fromEnv !== '') {
    const assets = assetsIn(fromEnv);
    if (assets !== undefined) return assets;
    throw new Error(
      `KUBEBUILDER_ASSETS=${fromEnv} lacks kube-apiserver, etcd or kubectl; run \`bash hack/deps.sh\``,
    );
  }
  const cache =
    process.env.CARDINAL_CACHE_DIR ??
    join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'cardinal');
  const dir = join(cache, 'kube', process.env.KUBE_VERSION ?? DEFAULT_KUBE_VERSION);
  const assets = assetsIn(dir);
  if (assets !== undefined) return assets;
  throw new Error(
    `kube-apiserver, etcd and kubectl not found (KUBEBUILDER_ASSETS unset, nothing in ${dir}); ` +
      'run `bash hack/deps.sh` to build them',
  );
}

/** Starts etcd and kube-apiserver, or, with USE_EXISTING_CLUSTER=true, uses the current cluster. */
export async function startControlPlane(options: ControlPlaneOptions = {}): Promise<ControlPlane> {
  if (process.env.USE_EXISTING_CLUSTER === 'true') return existingCluster();
  const assets = kubeAssets();
  const timeoutSeconds = Number(process.env.CONTROL_PLANE_TIMEOUT ?? '60');
  const readyTimeoutMs = options.readyTimeoutMs ?? timeoutSeconds * 1000;

  const dir = mkdtempSync(join(tmpdir(), 'cardinal-control-plane-'));
  const programs: Program[] = [];
  const closeAll = async (closeOptions: CloseOptions = {}): Promise<void> => {
    // The API server first: it would otherwise spend its grace period retrying etcd.
    for (const program of programs.toReversed()) await program.stop(closeOptions);
    if (!(closeOptions.keepDir ?? false) && !keepTmpRequested())
      rmSync(dir, { recursive: true, force: true });
  };
  try {
    const [etcdPort, peerPort, apiPort] = await distinctFreePorts(3);
    const server = `https://127.0.0.1:${apiPort}`;
    const pki = await makePki(dir);
    const kubeconfig = join(dir, 'kubeconfig');
    await writeFile(kubeconfig, kubeconfigYaml(server, pki), { mode: 0o600 });

    await mkdir(join(dir, 'etcd'), { mode: 0o700 });
    const etcd = new Program({
      name: 'etcd',
      command: assets.etcd,
      dir,
      args: () => [
        '--name=cardinal',
        `--data-dir=${join(dir, 'etcd')}`,
        `--listen-client-urls=http://127.0.0.1:${etcdPort}`,
        `--advertise-client-urls=http://127.0.0.1:${etcdPort}`,
        `--listen-peer-urls=http://127.0.0.1:${peerPort}`,
        `--initial-advertise-peer-urls=http://127.0.0.1:${peerPort}`,
        `--initial-cluster=cardinal=http://127.0.0.1:${peerPort}`,
        '--unsafe-no-fsync=true',
        '--log-level=warn',
      ],
      readyUrl: `http://127.0.0.1:${etcdPort}/health`,
      readyTimeoutMs,
    });
    programs.push(etcd);
    await etcd.start();

    const apiserver = new Program({
      name: 'kube-apiserver',
      command: assets.kubeApiserver,
      dir,
      args: () => [
        `--etcd-servers=http://127.0.0.1:${etcdPort}`,
        '--bind-address=127.0.0.1',
        '--advertise-address=127.0.0.1',
        `--secure-port=${apiPort}`,
        `--cert-dir=${pki.dir}`,
        `--tls-cert-file=${join(pki.dir, 'serving.crt')}`,
        `--tls-private-key-file=${join(pki.dir, 'serving.key')}`,
        `--client-ca-file=${join(pki.dir, 'ca.crt')}`,
        `--token-auth-file=${join(dir, 'tokens.csv')}`,
        '--authorization-mode=RBAC',
        `--service-account-issuer=${server}`,
        `--service-account-key-file=${join(pki.dir, 'sa.pub')}`,
        `--service-account-signing-key-file=${join(pki.dir, 'sa.key')}`,
        '--service-cluster-ip-range=10.0.0.0/24',
        '--endpoint-reconciler-type=none',
        '--allow-privileged=true',
        '--disable-admission-plugins=ServiceAccount',
        '--profiling=false',
      ],
    });
    programs.push(apiserver);
    // Program's own readiness check uses fetch, which cannot trust our CA; /readyz is polled here.
    await apiserver.start();
    await waitForReadyz(server, pki, apiserver, readyTimeoutMs);

    const cacheDir = join(dir, 'kubectl-cache');
    const plane: ControlPlane = {
      kubeconfig,
      server,
      dirs: [dir],
      kubectl: (args, o) =>
        runKubectl(assets.kubectl, ['--kubeconfig', kubeconfig, '--cache-dir', cacheDir, ...args], o),
      apply: (yaml) => applyWith(plane, yaml),
      close: closeAll,
    };
    return plane;
  } catch (err) {
    await closeAll({ keepDir: true, graceMs: 2_000 });
    const message = err instanceof Error ? err.message : String(err);
    throw new Error(`control plane did not start: ${message}\n(directory kept: ${dir})`);
  }
}

async function existingCluster(): Promise<ControlPlane> {
  const kubeconfig = process.env.KUBECONFIG ?? join(homedir(), '.kube', 'config');
  let kubectl = 'kubectl';
  try {
    kubectl = kubeAssets().kubectl;
  } catch {
    const onPath = (process.env.PATH ?? '')
      .split(delimiter)
      .map((d) => join(d, 'kubectl'))
      .find(isExecutable);
    if (onPath === undefined) throw new Error('kubectl not found; run `bash hack/deps.sh`');
    kubectl = onPath;
  }
  const run = (args: readonly string[], o?: KubectlOptions) =>
    runKubectl(kubectl, ['--kubeconfig', kubeconfig, ...args], o);
  const view = await run(['config', 'view', '--minify', '-o', 'jsonpath={.clusters[0].cluster.server}']);
  if (view.code !== 0 || view.stdout === '') {
    throw new Error(`USE_EXISTING_CLUSTER=true but ${kubeconfig} names no current cluster: ${view.stderr}`);
  }
  const plane: ControlPlane = {
    kubeconfig,
    server: view.stdout,
    dirs: [],
    kubectl: run,
    apply: (yaml) => applyWith(plane, yaml),
    // The cluster is not ours to stop.
    close: async () => {},
  };
  return plane;
}

async function applyWith(plane: ControlPlane, yaml: string): Promise<string> {
  const r = await plane.kubectl(['apply', '-f', '-'], { input: yaml });
  if (r.code !== 0) throw new Error(`kubectl apply failed (exit ${r.code}): ${r.stderr.trim()}`);
  return r.stdout;
}

function runKubectl(
  command: string,
  args: readonly string[],
  options: KubectlOptions = {},
): Promise<KubectlResult> {
  const { input, timeoutMs = 60_000 } = options;
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      const err = Buffer.concat(stderr).toString('utf8');
      resolve({
        stdout: Buffer.concat(stdout).toString('utf8'),
        stderr: signal === null ? err : `${err}(kubectl killed by ${signal} after ${timeoutMs} ms)`,
        code: code ?? 1,
      });
    });
    // kubectl may exit before reading all of stdin (a bad flag); that is reported by its exit code.
    child.stdin.on('error', () => {});
    child.stdin.end(input ?? '');
  });
}

async function distinctFreePorts(n: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < n) ports.add(await freePort());
  return [...ports];
}

interface Pki {
  dir: string;
  caCert: string;
  adminCert: string;
  adminKey: string;
}

async function openssl(cwd: string, args: readonly string[]): Promise<void> {
  try {
    await execFileAsync('openssl', args, { cwd });
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr ?? '';
    throw new Error(`openssl ${args.join(' ')} failed: ${stderr || String(err)}`);
  }
}

/** Makes the CA, the serving and admin certificates, the service-account keys and the token files. */
async function makePki(dir: string): Promise<Pki> {
  const pki = join(dir, 'pki');
  await mkdir(pki, { mode: 0o700 });
  const run = (args: readonly string[]) => openssl(pki, args);
  const ecKey = (file: string) =>
    run(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', file]);
  await Promise.all([ecKey('ca.key'), ecKey('serving.key'), ecKey('admin.key'), ecKey('sa.key')]);
  await run(['pkey', '-in', 'sa.key', '-pubout', '-out', 'sa.pub']);
  await run([
    'req',
    '-x509',
    '-new',
    '-key',
    'ca.key',
    '-subj',
    '/CN=cardinal-control-plane-ca',
    '-days',
    '365',
    '-sha256',
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
    '-out',
    'ca.crt',
  ]);
  // One after the other: both update the CA's serial file.
  const sign = async (name: string, subject: string, extensions: string[]): Promise<void> => {
    await run(['req', '-new', '-key', `${name}.key`, '-subj', subject, '-out', `${name}.csr`]);
    await writeFile(join(pki, `${name}.ext`), `${extensions.join('\n')}\n`);
    await run([
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      'ca.crt',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-days',
      '365',
      '-sha256',
      '-extfile',
      `${name}.ext`,
      '-out',
      `${name}.crt`,
    ]);
  };
  const leaf = ['basicConstraints=CA:FALSE', 'keyUsage=critical,digitalSignature,keyEncipherment'];
  await sign('serving', '/CN=kube-apiserver', [
    ...leaf,
    'extendedKeyUsage=serverAuth',
    'subjectAltName=IP:127.0.0.1,IP:::1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,' +
      'DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local',
  ]);
  await sign('admin', '/O=system:masters/CN=cardinal-admin', [...leaf, 'extendedKeyUsage=clientAuth']);

  const token = (await execFileAsync('openssl', ['rand', '-hex', '24'])).stdout.trim();
  await writeFile(join(dir, 'admin.token'), `${token}\n`, { mode: 0o600 });
  // token,user,uid,"group1,group2"
  await writeFile(join(dir, 'tokens.csv'), `${token},cardinal-admin,cardinal-admin,"system:masters"\n`, {
    mode: 0o600,
  });
  await chmod(join(pki, 'ca.key'), 0o600);

  const [caCert, adminCert, adminKey] = await Promise.all(
    ['ca.crt', 'admin.crt', 'admin.key'].map((f) => readFile(join(pki, f), 'utf8')),
  );
  return { dir: pki, caCert: caCert!, adminCert: adminCert!, adminKey: adminKey! };
}

function kubeconfigYaml(server: string, pki: Pki): string {
  const b64 = (pem: string) => Buffer.from(pem).toString('base64');
  return `apiVersion: v1
kind: Config
clusters:
- name: cardinal
  cluster:
    server: ${server}
    certificate-authority-data: ${b64(pki.caCert)}
users:
- name: cardinal-admin
  user:
    client-certificate-data: ${b64(pki.adminCert)}
    client-key-data: ${b64(pki.adminKey)}
contexts:
- name: cardinal
  context:
    cluster: cardinal
    user: cardinal-admin
    namespace: default
current-context: cardinal
`;
}

/** GETs `url` over HTTPS as the admin user, trusting only our CA. */
function getWithClientCert(url: string, pki: Pki): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      url,
      { ca: pki.caCert, cert: pki.adminCert, key: pki.adminKey, timeout: 5_000 },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.once('end', () =>
          resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }),
        );
        res.once('error', reject);
      },
    );
    req.once('timeout', () => req.destroy(new Error('timed out')));
    req.once('error', reject);
    req.end();
  });
}

/**
 * Polls /readyz until it answers ok. The admin cert is used because anonymous requests are
 * forbidden until RBAC's bootstrap roles exist, which is one of the things /readyz waits for.
 */
async function waitForReadyz(server: string, pki: Pki, apiserver: Program, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer yet';
  for (;;) {
    if (!apiserver.running) {
      throw new Error(
        `kube-apiserver exited (${apiserver.exitDescription()})\n--- ${apiserver.logPath} ---\n${apiserver.logTail()}`,
      );
    }
    try {
      const res = await getWithClientCert(`${server}/readyz`, pki);
      if (res.status === 200) return;
      last = `HTTP ${res.status}: ${res.body
        .trim()
        .split('\n')
        .filter((l) => l.includes('failed'))
        .join('; ')}`;
    } catch (err) {
      last = err instanceof Error ? err.message : String(err);
    }
    if (Date.now() >= deadline) {
      throw new Error(
        `kube-apiserver not ready after ${timeoutMs} ms (${last})\n--- ${apiserver.logPath} ---\n${apiserver.logTail()}`,
      );
    }
    await sleep(250);
  }
}
