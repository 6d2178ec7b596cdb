// Bundles the viewer page into the Python package (livekit_avatar_plugin/viewer/static/),
// which the viewer server serves. Run by scripts/setup.sh after `npm ci`; nothing is
// loaded from a CDN at run time. BUILD_STAMP is written last: setup rebuilds when any
// input is newer than it, so an interrupted build is never taken for a fresh one.
import { build } from "esbuild";
import { copyFileSync, mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "livekit_avatar_plugin", "viewer", "static");

mkdirSync(out, { recursive: true });
await build({
  entryPoints: [join(here, "src", "main.ts")],
  bundle: true,
  format: "esm",
  target: ["chrome110", "firefox115", "safari16"],
  minify: true,
  sourcemap: true,
  outfile: join(out, "viewer.js"),
  logLevel: "warning",
});
for (const f of ["index.html", "style.css"]) copyFileSync(join(here, "src", f), join(out, f));
writeFileSync(join(out, "BUILD_STAMP"), new Date().toISOString() + "\n");
console.log(`viewer bundle written to ${out}`);
