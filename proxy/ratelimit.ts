/**
 * Calls `log` at most once per interval per key, passing how many calls were suppressed since the
 * last one: for logs a misbehaving sender or upstream could otherwise flood.
 */
export function rateLimited(intervalMs: number) {
  const last = new Map<string, { at: number; suppressed: number }>();
  return (key: string, log: (suppressed: number) => void): void => {
    const now = Date.now();
    const e = last.get(key);
    if (e !== undefined && now - e.at < intervalMs) {
      e.suppressed++;
      return;
    }
    last.set(key, { at: now, suppressed: 0 });
    log(e?.suppressed ?? 0);
  };
}
