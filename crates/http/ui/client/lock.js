/**
 * The cross-tab lock that makes refresh single-flight between tabs.
 *
 * With the Web Locks API (every current browser, secure contexts) `navigator.locks.request` grants
 * one named lock to one tab of the origin at a time, and frees it if that tab closes or crashes.
 * Without it, only calls inside one tab are deduplicated (see `client.ts`).
 */
/** The Web Locks API, when this context has it. */
export function webLocks() {
    const locks = globalThis.navigator?.locks;
    if (!locks || typeof locks.request !== "function")
        return null;
    return (name, fn) => locks.request(name, { mode: "exclusive" }, fn);
}
/** An in-process lock: what two clients in one page (or a test's two "tabs") can share. */
export function localLock() {
    const tails = new Map();
    return (name, fn) => {
        const prev = tails.get(name) ?? Promise.resolve();
        const run = prev.then(fn, fn);
        const tail = run.catch(() => undefined);
        tails.set(name, tail);
        void tail.then(() => {
            if (tails.get(name) === tail)
                tails.delete(name);
        });
        return run;
    };
}
