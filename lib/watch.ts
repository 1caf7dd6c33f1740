// Tells the proxy when its configuration on disk may have changed, so that it reloads without a
// SIGHUP. A mounted ConfigMap changes by the kubelet renaming the `..data` symlink over a new
// timestamped directory (test/framework/kubelet.ts shows the steps): the visible files are
// symlinks that never change themselves, so a watch on a file sees nothing. The directory is
// watched instead, the parent directory for a single file.
//
// fs.watch is not reliable everywhere (network and overlay file systems can drop events, and a
// watched directory that is replaced leaves the watch on the old one), so a slow poll compares a
// cheap fingerprint of the files as a backstop and re-establishes a lost watch.

import { type FSWatcher, readdirSync, readlinkSync, statSync, watch } from 'node:fs';
import { dirname, join } from 'node:path';

export interface WatchOptions {
  /** Quiet time after the last event before onChange runs; a kubelet update is a burst. Default 100. */
  readonly debounceMs?: number;
  /** Interval of the fingerprint poll. Default 5000. */
  readonly pollMs?: number;
  /**
   * False to rely on the poll alone, for file systems where fs.watch reports nothing (some network
   * mounts). Default true.
   */
  readonly fsWatch?: boolean;
  /** Told when the watch fails or onChange throws; the watcher goes on either way. */
  readonly onError?: (err: unknown) => void;
}

export interface ConfigWatch {
  close(): void;
}

/**
 * Calls `onChange` after the files under `path` (a directory or one file) change. It runs once per
 * change of the fingerprint: the resolved files' inode, size, mtime and ctime, and the target of
 * `..data`. The caller reloads and compares the content hash, so a call with no real change costs
 * only a reload.
 */
export function watchConfig(path: string, onChange: () => void, opts: WatchOptions = {}): ConfigWatch {
  return new ConfigWatcher(path, onChange, opts);
}

class ConfigWatcher implements ConfigWatch {
  private readonly isDir: boolean;
  private readonly dir: string;
  private watcher: FSWatcher | undefined;
  private debounce: NodeJS.Timeout | undefined;
  private readonly poll: NodeJS.Timeout;
  private last: string;
  private closed = false;

  constructor(
    private readonly path: string,
    private readonly onChange: () => void,
    private readonly opts: WatchOptions,
  ) {
    this.isDir = isDirectory(path);
    this.dir = this.isDir ? path : dirname(path);
    this.last = this.fingerprint();
    const useWatch = opts.fsWatch ?? true;
    if (useWatch) this.startWatch();
    this.poll = setInterval(() => {
      if (useWatch && this.watcher === undefined) this.startWatch();
      this.check();
    }, opts.pollMs ?? 5000);
    this.poll.unref();
  }

  close(): void {
    this.closed = true;
    clearInterval(this.poll);
    clearTimeout(this.debounce);
    this.watcher?.close();
    this.watcher = undefined;
  }

  private startWatch(): void {
    try {
      const w = watch(this.dir, { persistent: false }, () => this.schedule());
      w.on('error', (err) => {
        // The directory went away or was replaced; the poll watches it again once it is back.
        w.close();
        if (this.watcher === w) this.watcher = undefined;
        this.opts.onError?.(err);
      });
      this.watcher = w;
    } catch (err) {
      this.opts.onError?.(err);
    }
  }

  private schedule(): void {
    clearTimeout(this.debounce);
    this.debounce = setTimeout(() => this.check(), this.opts.debounceMs ?? 100);
    this.debounce.unref();
  }

  private check(): void {
    if (this.closed) return;
    const now = this.fingerprint();
    if (now === this.last) return;
    this.last = now;
    try {
      this.onChange();
    } catch (err) {
      this.opts.onError?.(err);
    }
  }

  private fingerprint(): string {
    const names = this.isDir ? listVisible(this.path) : [];
    const parts = [`..data=${readlinkOrEmpty(join(this.dir, '..data'))}`];
    if (this.isDir) for (const name of names) parts.push(`${name}=${statPrint(join(this.path, name))}`);
    else parts.push(statPrint(this.path));
    return parts.join('\n');
  }
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/** The names load.ts reads from a directory: no dot entries. */
function listVisible(dir: string): string[] {
  try {
    return readdirSync(dir)
      .filter((f) => !f.startsWith('.'))
      .sort();
  } catch (err) {
    return [`(${(err as NodeJS.ErrnoException).code ?? 'error'})`];
  }
}

/** What changes when a file, or the file a symlink resolves to, is replaced or written. */
function statPrint(path: string): string {
  try {
    const s = statSync(path, { bigint: true });
    return `${s.dev}:${s.ino}:${s.size}:${s.mtimeNs}:${s.ctimeNs}`;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code ?? 'error';
  }
}

function readlinkOrEmpty(path: string): string {
  try {
    return readlinkSync(path);
  } catch {
    return '';
  }
}
