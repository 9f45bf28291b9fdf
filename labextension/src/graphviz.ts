// Entry of the separately bundled engine module (graphviz.js): Graphviz compiled to WebAssembly.
export { instance } from "@viz-js/viz";
