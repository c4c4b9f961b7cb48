/**
 * Starts a subscription whose unsubscribe function arrives asynchronously (the shell's
 * `listen`) and returns the function that ends it. Ending it before the subscription is set
 * up still ends it once it is (a component destroyed right after mounting).
 */
export function subscribe(start: () => Promise<() => void>): () => void {
  let off: (() => void) | null = null;
  let ended = false;
  void start().then((f) => {
    if (ended) f();
    else off = f;
  });
  return () => {
    ended = true;
    off?.();
  };
}
