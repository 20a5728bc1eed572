// The hosted page (crates/http/ui/) embeds the client as tsc builds it, in ui/client/*.js: the
// Rust build must not need Node, so the built files are committed. This script keeps them honest.
//   node scripts/ui-client.mjs          copy dist/*.js into crates/http/ui/client/
//   node scripts/ui-client.mjs --check  fail if the committed copy differs from dist/ (CI runs
//                                       `npm run build` first, so dist/ is fresh from src/)
import { copyFileSync, readFileSync, readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const dist = join(root, "dist");
const ui = join(root, "..", "..", "crates", "http", "ui", "client");
const js = (dir) => readdirSync(dir).filter((f) => f.endsWith(".js")).sort();
const check = process.argv.includes("--check");

const built = js(dist);
if (built.length === 0) throw new Error("dist/ has no .js: run `npm run build` first");
if (!check) {
  for (const f of built) copyFileSync(join(dist, f), join(ui, f));
  console.log(`copied ${built.join(", ")} to ${ui}`);
} else {
  const problems = [];
  const committed = js(ui);
  if (committed.join() !== built.join()) problems.push(`files differ: built [${built}] vs committed [${committed}]`);
  for (const f of built.filter((f) => committed.includes(f))) {
    if (!readFileSync(join(dist, f)).equals(readFileSync(join(ui, f)))) problems.push(`${f} differs from the build of src/`);
  }
  if (problems.length > 0) {
    console.error(`crates/http/ui/client is stale:\n  ${problems.join("\n  ")}\nFix: cd clients/js && npm run build && npm run sync-ui`);
    process.exit(1);
  }
  console.log(`crates/http/ui/client matches the build of clients/js/src (${built.length} files)`);
}
