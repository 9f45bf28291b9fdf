// Bundles the anywidget ESM, the Graphviz WebAssembly engine and the CSS into the Python
// package (ckptlab/widgets/static/, generated, not committed).
import { build } from "esbuild";
import { copyFileSync, mkdirSync } from "node:fs";

const out = "../ckptlab/widgets/static";
mkdirSync(out, { recursive: true });
const common = { bundle: true, format: "esm", minify: true, target: "es2022", logLevel: "warning" };
await build({ ...common, entryPoints: ["src/widget.ts"], outfile: `${out}/explorer.js` });
await build({ ...common, entryPoints: ["src/graphviz.ts"], outfile: `${out}/graphviz.js` });
copyFileSync("style/explorer.css", `${out}/explorer.css`);
