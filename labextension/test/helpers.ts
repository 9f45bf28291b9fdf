// Test helpers: the Python-written fixture and synthetic graphs of any size.
import { readFileSync } from "node:fs";
import { Graph, type IGraphJSON } from "../src/core/model.js";

export function fixture(name = "mismatch.graph.json"): IGraphJSON {
  const url = new URL(`../../test/fixtures/${name}`, import.meta.url);
  return JSON.parse(readFileSync(url, "utf-8")) as IGraphJSON;
}

export function schema(): { $defs: { graph: { properties: Record<string, unknown> } } } {
  const url = new URL("../../../ckptlab/inspect/graph.schema.json", import.meta.url);
  return JSON.parse(readFileSync(url, "utf-8")) as ReturnType<typeof schema>;
}

/**
 * root -> `layers` groups -> `perLayer` values each; the value at (problemLayer, 0) is a
 * shape conflict, everything else restored.
 */
export function synthetic(layers: number, perLayer: number, problemLayer = -1): Graph {
  const base = fixture();
  const parent = [-1];
  const name = ["(root)"];
  const state = [-1];
  parent.push(0);
  name.push("model");
  state.push(-1);
  for (let l = 0; l < layers; l++) {
    const group = parent.length;
    parent.push(1);
    name.push(`layer_${l}`);
    state.push(-1);
    for (let v = 0; v < perLayer; v++) {
      parent.push(group);
      name.push(`w${v}`);
      state.push(l === problemLayer && v === 0 ? 5 : 0);
    }
  }
  const n = parent.length;
  const fill = (x: number): number[] => new Array<number>(n).fill(x);
  return new Graph({
    ...base,
    nodes: {
      parent,
      name,
      state,
      flags: fill(0),
      stored: fill(-1),
      program: fill(-1),
      reason: fill(-1),
    },
    edges: [],
    suggestions: [],
    options: {},
  });
}
