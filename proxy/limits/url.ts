// Store URLs (--limits.store): parsed without loading the client, so flag parsing stays light.

/** The address of a store URL without user or password, for logs and status. */
export function redactStoreUrl(url: string): string {
  const m = /^([a-z+]+:\/\/)(?:[^@/]*@)?(.*)$/.exec(url);
  return m === null ? '(invalid URL)' : `${m[1]}${m[2]}`;
}

/** Parses a store URL; throws an Error naming what is wrong. */
export function parseStoreUrl(url: string): {
  cluster: boolean;
  tls: boolean;
  nodes: { host: string; port: number }[];
  db: number;
  username: string | undefined;
} {
  const m = /^(redis|rediss)(\+cluster)?:\/\/(?:([^:@/]*)(?::[^@/]*)?@)?([^/]+)(?:\/(\d+))?\/?$/.exec(url);
  if (m === null) {
    throw new Error(
      `"${redactStoreUrl(url)}" is not redis://HOST:PORT[/DB], rediss://..., or redis+cluster://HOST:PORT,...`,
    );
  }
  if (/^[^:@/]*:[^@/]*@/.test(url.replace(/^[a-z+]+:\/\//, ''))) {
    throw new Error('a password in the URL is not accepted; use --limits.store.password-file');
  }
  const nodes = m[4]!.split(',').map((hp) => {
    const at = /^(?:\[([^\]]+)\]|([^:]+))(?::(\d+))?$/.exec(hp);
    if (at === null) throw new Error(`"${hp}" is not HOST:PORT`);
    const port = Number(at[3] ?? '6379');
    if (port < 1 || port > 65535) throw new Error(`port ${port} is out of range`);
    return { host: at[1] ?? at[2]!, port };
  });
  if (m[2] === undefined && nodes.length > 1) {
    throw new Error('several addresses need redis+cluster:// (a Redis Cluster)');
  }
  if (m[2] !== undefined && m[5] !== undefined) throw new Error('a Redis Cluster has no database number');
  return {
    cluster: m[2] !== undefined,
    tls: m[1] === 'rediss',
    nodes,
    db: Number(m[5] ?? '0'),
    username: m[3] === undefined || m[3] === '' ? undefined : decodeURIComponent(m[3]),
  };
}
