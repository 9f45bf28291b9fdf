// Builds the JupyterLab extension (issue 7) into ../ckptlab/labextension (generated, not committed):
//  1. tsc compiles src/lab/** and the shared core/render modules into lib/jlab/;
//  2. @jupyter/builder (rspack, module federation) bundles them against JupyterLab 4.6
//     (@jupyterlab/core-meta), exactly what `jupyter-builder build .` runs, without needing the
//     Python CLI on PATH;
//  3. esbuild writes the Graphviz WebAssembly engine as one ES module into the extension's
//     static/ folder, served once per page at {labextensions}/ckptlab/static/graphviz.js: the
//     MIME renderer, the viewer and every explorer widget in JupyterLab load it from there.
// `node build-lab.mjs --dev` builds unminified with source maps.
import { execFileSync } from "node:child_process";
import { existsSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { build } from "esbuild";

const require = createRequire(import.meta.url);
const dev = process.argv.includes("--dev");
const out = "../ckptlab/labextension";

rmSync("lib/jlab", { recursive: true, force: true });
execFileSync(process.execPath, [require.resolve("typescript/bin/tsc"), "-p", "tsconfig.lab.json"], {
  stdio: "inherit",
});

const builder = join(
  dirname(require.resolve("@jupyter/builder/package.json")),
  "lib",
  "build-labextension.js",
);
const core = join(
  dirname(require.resolve("@jupyterlab/core-meta/package.json")),
  "core.package.json",
);
if (!existsSync(core)) throw new Error(`ckptlab: ${core} is missing; run npm install`);
execFileSync(
  process.execPath,
  [builder, "--core-package-file", core, ...(dev ? ["--development", "--source-map"] : []), "."],
  { stdio: "inherit" },
);

await build({
  entryPoints: ["src/graphviz.ts"],
  outfile: `${out}/static/graphviz.js`,
  bundle: true,
  format: "esm",
  minify: !dev,
  target: "es2022",
  logLevel: "warning",
});
console.log(`ckptlab: JupyterLab extension built in ${out}`);
