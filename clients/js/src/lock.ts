/**
 * The cross-tab lock that makes refresh single-flight between tabs.
 *
 * With the Web Locks API (every current browser, secure contexts) `navigator.locks.request` grants
 * one named lock to one tab of the origin at a time, and frees it if that tab closes or crashes.
 * Without it, only calls inside one tab are deduplicated (see `client.ts`).
 *
 * Notes: a lock alone is not enough with `localStorage`. In Chromium each tab reads its own copy
 * of `localStorage`, and another tab's write reaches it asynchronously, on a different channel
 * from the lock's release: the second tab can get the lock and still read the refresh token the
 * first one just spent. So the first tab, before releasing the lock, leaves a note ("token X is
 * spent") in the lock manager itself, as a held shared lock; the lock manager is one authority,
 * so the second tab's `query()` sees the note and waits for the new tokens instead of replaying.
 */

export interface CrossTabLock {
  /** Runs `fn` while holding the lock `name`, exclusive across tabs. */
  run<T>(name: string, fn: () => Promise<T>): Promise<T>;
  /** Leaves the note `name`, visible to every tab for `ms` (or until this tab closes). */
  note(name: string, ms: number): Promise<void>;
  /** Whether some tab left the note `name`. */
  noted(name: string): Promise<boolean>;
}

interface LockManagerLike {
  request<T>(name: string, options: { mode: "exclusive" | "shared" }, fn: () => Promise<T>): Promise<T>;
  query(): Promise<{ held?: { name?: string }[] }>;
}

/** The Web Locks API, when this context has it. */
export function webLocks(): CrossTabLock | null {
  const locks = (globalThis as { navigator?: { locks?: LockManagerLike } }).navigator?.locks;
  if (!locks || typeof locks.request !== "function" || typeof locks.query !== "function") return null;
  return {
    run: (name, fn) => locks.request(name, { mode: "exclusive" }, fn),
    note: (name, ms) =>
      new Promise<void>((granted) => {
        void locks.request(name, { mode: "shared" }, () => {
          granted();
          return new Promise<void>((r) => setTimeout(r, ms));
        });
      }),
    noted: async (name) => ((await locks.query()).held ?? []).some((l) => l.name === name),
  };
}

/** An in-process lock: what two clients in one page (or a test's two "tabs") can share. */
export function localLock(): CrossTabLock {
  const tails = new Map<string, Promise<unknown>>();
  const notes = new Map<string, number>();
  return {
    run: (name, fn) => {
      const prev = tails.get(name) ?? Promise.resolve();
      const run = prev.then(fn, fn);
      const tail = run.catch(() => undefined);
      tails.set(name, tail);
      void tail.then(() => {
        if (tails.get(name) === tail) tails.delete(name);
      });
      return run;
    },
    note: async (name, ms) => {
      notes.set(name, Date.now() + ms);
    },
    noted: async (name) => (notes.get(name) ?? 0) > Date.now(),
  };
}
