// A real Kubernetes cluster with a node, for test/cluster/: hack/cluster.sh brings one up on this
// machine (its own network namespace; see the script's header), and hack/cluster-images.sh builds
// the images and imports them into its containerd.
//
// With USE_EXISTING_CLUSTER=true the cluster of KUBECONFIG is used instead (kind, k3d, ...): the
// images are still built here, and each archive is handed to CARDINAL_IMAGE_LOAD, a shell command
// in which {} stands for the archive's path (`kind load image-archive {}`). Nothing is started or
// stopped then.
//
// A cluster that cannot start is an error naming the reason, never a skipped test.

import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { helmPath } from './chart.js';
import type { KubectlOptions, KubectlResult } from './kube.js';
import { kubeAssets } from './kube.js';
import { keepTmpRequested } from './process.js';

const execFileAsync = promisify(execFile);
const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** The images hack/cluster-images.sh knows. */
export type ImageName =
  | 'pause'
  | 'node'
  | 'proxy'
  | 'operator'
  | 'prometheus'
  | 'prometheus3'
  | 'vmagent'
  | 'pushgateway'
  | 'promoperator'
  | 'reloader';

export interface Cluster {
  readonly kubeconfig: string;
  /** True for USE_EXISTING_CLUSTER=true: the cluster is not ours to stop. */
  readonly existing: boolean;
  /** The directory hack/cluster.sh keeps the cluster in (logs, configuration); none when existing. */
  readonly dir: string | undefined;
  /** Image references by name, as imported into the cluster. */
  readonly images: Readonly<Partial<Record<ImageName, string>>>;
  /** The real kubectl against this cluster, always with --request-timeout. Never throws. */
  kubectl(args: readonly string[], options?: KubectlOptions): Promise<KubectlResult>;
  /** As kubectl, but throws with kubectl's stderr on a non-zero exit; returns stdout. */
  kubectlOrThrow(args: readonly string[], input?: string, timeoutMs?: number): Promise<string>;
  /** The real helm against this cluster; throws with helm's output on failure. */
  helm(args: readonly string[]): Promise<string>;
  /**
   * GET PATH from a Service's port through the API server's service proxy (the way a test on
   * the host reaches a pod: the pods' network is not routed to the host). Returns the body.
   */
  serviceGet(namespace: string, service: string, port: number | string, path: string): Promise<string>;
  /**
   * Any request (method, headers, body) to a Service's port through the API server's service
   * proxy, by way of a `kubectl proxy` on loopback (started on first use, stopped by down()): for
   * what `kubectl get --raw` cannot send, such as a remote-write body or a Pushgateway PUT.
   */
  serviceFetch(
    namespace: string,
    service: string,
    port: number | string,
    path: string,
    init?: RequestInit,
  ): Promise<Response>;
  /**
   * hack/cluster.sh down, for a local cluster: everything it made is removed. Returns the
   * machine's snapshot (hack/cluster.sh snapshot) taken right after; undefined when there was
   * nothing to take down.
   */
  down(): Promise<string | undefined>;
  /** The snapshot `up` took before it changed anything. */
  snapshotBefore(): string;
}

/**
 * Where hack/build-prometheus-operator.sh keeps prometheus-operator (binaries, CRDs, RBAC
 * examples): CARDINAL_PROMETHEUS_OPERATOR (hack/deps.sh prints it), else its cache directory,
 * which hack/cluster-images.sh fills when it builds the promoperator image.
 */
export function prometheusOperatorDir(): string {
  const cache =
    process.env.CARDINAL_CACHE_DIR ??
    join(process.env.XDG_CACHE_HOME ?? join(process.env.HOME ?? '/root', '.cache'), 'cardinal');
  const dir =
    process.env.CARDINAL_PROMETHEUS_OPERATOR ||
    join(cache, `prometheus-operator-${process.env.PROMETHEUS_OPERATOR_VERSION ?? '0.85.0'}`);
  if (!existsSync(join(dir, 'crds')))
    throw new Error(
      `no prometheus-operator in ${dir}: run hack/build-prometheus-operator.sh (hack/deps.sh does)`,
    );
  return dir;
}

/** The time since `start`, in seconds with one decimal, for the phase lines the suite prints. */
export function secondsSince(start: number): string {
  return ((performance.now() - start) / 1000).toFixed(1);
}

/** Runs a program with its stderr passed through (the scripts print their phases there). */
function runScript(
  command: string,
  args: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      process.stderr.write(d);
    });
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolve(stdout);
      else
        reject(
          new Error(
            `${command} ${args.join(' ')} exited ${code}:\n${stderr.split('\n').slice(-30).join('\n')}`,
          ),
        );
    });
  });
}

function envLines(stdout: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of stdout.split('\n')) {
    const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line.trim());
    if (m?.[1] !== undefined && m[2] !== undefined) out[m[1]] = m[2];
  }
  return out;
}

/** Builds the images (cached), printing each phase; returns name -> ref and name -> archive. */
async function buildImages(names: readonly ImageName[], loadInto?: string): Promise<Record<string, string>> {
  const args = loadInto === undefined ? ['build', ...names] : ['load', loadInto, ...names];
  return envLines(await runScript('bash', [join(ROOT, 'hack/cluster-images.sh'), ...args]));
}

async function kubectlWith(
  kubectl: string,
  kubeconfig: string,
  args: readonly string[],
  options: KubectlOptions = {},
): Promise<KubectlResult> {
  const timeoutMs = options.timeoutMs ?? 60_000;
  // kubectl waits forever on an API server that accepts connections and never answers.
  const full = ['--kubeconfig', kubeconfig, `--request-timeout=${Math.ceil(timeoutMs / 1000)}s`, ...args];
  return new Promise((resolve) => {
    const child = execFile(
      kubectl,
      full,
      { timeout: timeoutMs + 5_000, maxBuffer: 64 << 20 },
      (err, stdout, stderr) => {
        const code = err === null ? 0 : typeof err.code === 'number' ? err.code : 1;
        resolve({ stdout, stderr: err !== null && stderr === '' ? String(err.message) : stderr, code });
      },
    );
    if (options.input !== undefined) child.stdin?.end(options.input);
    else child.stdin?.end();
  });
}

/**
 * Brings up the local cluster (or takes the existing one) and loads `images` into it. Prints the
 * time of each phase.
 */
export async function startCluster(images: readonly ImageName[]): Promise<Cluster> {
  const existing = process.env.USE_EXISTING_CLUSTER === 'true';
  const kubectlBin = kubeAssets().kubectl;
  let dir: string | undefined;
  let kubeconfig: string;
  let refs: Record<string, string>;
  const started = performance.now();
  if (existing) {
    kubeconfig = process.env.KUBECONFIG ?? join(process.env.HOME ?? '/root', '.kube', 'config');
    const hook = process.env.CARDINAL_IMAGE_LOAD;
    if (hook === undefined || hook === '')
      throw new Error(
        'USE_EXISTING_CLUSTER=true needs CARDINAL_IMAGE_LOAD, a command that loads an image archive ' +
          "into the cluster with {} for its path, e.g. CARDINAL_IMAGE_LOAD='kind load image-archive {}'",
      );
    refs = await buildImages(images);
    for (const name of images) {
      const archive = refs[`${name}_ARCHIVE`] ?? '';
      await runScript('sh', ['-c', hook.replaceAll('{}', `'${archive}'`)]);
    }
    console.log(`cluster: images built and loaded through CARDINAL_IMAGE_LOAD in ${secondsSince(started)}s`);
  } else {
    dir = mkdtempSync(join(tmpdir(), 'cardinal-cluster-'));
    const up = envLines(await runScript('bash', [join(ROOT, 'hack/cluster.sh'), 'up', dir])).KUBECONFIG;
    if (up === undefined) throw new Error(`hack/cluster.sh up ${dir} printed no KUBECONFIG`);
    kubeconfig = up;
    console.log(`cluster: up in ${secondsSince(started)}s (${dir})`);
    const t = performance.now();
    try {
      refs = await buildImages(images, dir);
    } catch (err) {
      await runScript('bash', [join(ROOT, 'hack/cluster.sh'), 'down', dir]).catch(() => {});
      throw err;
    }
    console.log(`cluster: images ready in ${secondsSince(t)}s`);
  }
  const imageRefs: Partial<Record<ImageName, string>> = {};
  for (const name of images) {
    const ref = refs[name];
    if (ref === undefined) throw new Error(`hack/cluster-images.sh printed no reference for ${name}`);
    imageRefs[name] = ref;
  }

  const kubectl = (args: readonly string[], options?: KubectlOptions) =>
    kubectlWith(kubectlBin, kubeconfig, args, options);
  const kubectlOrThrow = async (args: readonly string[], input?: string, timeoutMs?: number) => {
    const r = await kubectl(args, {
      ...(input === undefined ? {} : { input }),
      ...(timeoutMs === undefined ? {} : { timeoutMs }),
    });
    if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')} failed (${r.code}): ${r.stderr}`);
    return r.stdout;
  };
  // `kubectl proxy` on a port of loopback the kernel picks; it prints the address it serves on.
  let apiProxy: Promise<{ url: string; stop: () => void }> | undefined;
  const startApiProxy = () =>
    new Promise<{ url: string; stop: () => void }>((resolve, reject) => {
      const child = spawn(
        kubectlBin,
        ['--kubeconfig', kubeconfig, 'proxy', '--address=127.0.0.1', '--port=0'],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let out = '';
      const onData = (d: Buffer) => {
        out += d.toString();
        const m = /Starting to serve on (127\.0\.0\.1:\d+)/.exec(out);
        if (m !== null) resolve({ url: `http://${m[1]}`, stop: () => child.kill('SIGTERM') });
      };
      child.stdout.on('data', onData);
      child.stderr.on('data', onData);
      child.on('error', reject);
      child.on('exit', (code) => reject(new Error(`kubectl proxy exited ${code}: ${out}`)));
    });
  const stopApiProxy = async () => {
    const p = apiProxy;
    apiProxy = undefined;
    (await p?.catch(() => undefined))?.stop();
  };
  const script = (cmd: string) => runScript('bash', [join(ROOT, 'hack/cluster.sh'), cmd, dir ?? '']);
  let isDown = false;
  return {
    kubeconfig,
    existing,
    dir,
    images: imageRefs,
    kubectl,
    kubectlOrThrow,
    helm: async (args) => {
      try {
        const { stdout } = await execFileAsync(helmPath(), ['--kubeconfig', kubeconfig, ...args], {
          cwd: ROOT,
          maxBuffer: 16 << 20,
          env: { ...process.env, HELM_CACHE_HOME: join(tmpdir(), 'cardinal-helm-cache') },
        });
        return stdout;
      } catch (err) {
        const e = err as { stdout?: string; stderr?: string; message: string };
        // helm --wait says only that it timed out: the pods and the warnings say why.
        const pods = await kubectl(['get', 'pods', '-A', '-o', 'wide']);
        const warnings = await kubectl(['get', 'events', '-A', '--field-selector', 'type=Warning']);
        throw new Error(
          `helm ${args.join(' ')} failed: ${e.stderr ?? ''}${e.stdout ?? ''}${e.message}\n` +
            `pods:\n${pods.stdout}${pods.stderr}\nwarning events:\n${warnings.stdout}${warnings.stderr}`,
        );
      }
    },
    serviceGet: (namespace, service, port, path) =>
      kubectlOrThrow([
        'get',
        '--raw',
        `/api/v1/namespaces/${namespace}/services/${service}:${port}/proxy${path}`,
      ]),
    serviceFetch: async (namespace, service, port, path, init) => {
      apiProxy ??= startApiProxy();
      const { url } = await apiProxy;
      return fetch(`${url}/api/v1/namespaces/${namespace}/services/${service}:${port}/proxy${path}`, {
        signal: AbortSignal.timeout(60_000),
        ...init,
      });
    },
    down: async () => {
      await stopApiProxy();
      if (existing || isDown || dir === undefined) return undefined;
      isDown = true;
      const t = performance.now();
      await script('down');
      const after = await script('snapshot');
      console.log(`cluster: down and snapshot in ${secondsSince(t)}s`);
      // The logs stay when the run asked to keep temporary files; and nothing is deleted through
      // a mount that `down` could not remove.
      const mounted = readFileSync('/proc/self/mountinfo', 'utf8').includes(`${dir}/`);
      // rm -rf: the unpacked images are tens of thousands of files, and fs.rmSync takes minutes.
      if (!keepTmpRequested() && !mounted) await execFileAsync('rm', ['-rf', '--one-file-system', dir]);
      return after;
    },
    snapshotBefore: () => (dir === undefined ? '' : readFileSync(join(dir, 'machine.before'), 'utf8')),
  };
}
