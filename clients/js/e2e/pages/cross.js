// The cross-origin test page: builds a client from the query string and exposes it to the test.
//   ?api=http://127.0.0.1:PORT  &storage=local|memory  &lock=on|off
import * as lib from "/client/index.js";

const q = new URLSearchParams(location.search);
const storage = q.get("storage") === "local" ? lib.localStorageStorage("e2e") : lib.memoryStorage();
const client = new lib.FraiseAuth({
  baseUrl: q.get("api") ?? "",
  storage,
  ...(q.get("lock") === "off" ? { lock: false } : {}),
});
client.onChange((signedIn) => {
  document.getElementById("who").textContent = signedIn ? "someone" : "nobody";
});
Object.assign(globalThis, { client, lib, storage });
document.body.dataset.ready = "yes";
