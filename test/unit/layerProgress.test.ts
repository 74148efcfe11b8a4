import { describe, expect, it } from "vitest";
import { parseEventLine } from "../../src/backends/python/events.js";
import type { SlmEvent } from "../../src/core/events.js";
import { plainEventWriter } from "../../src/ui/plain.js";
import { progressParts } from "../../src/ui/progress.js";

// The GPTQ/AWQ recipe's progress (docs/quantize-recipes.md): decoder layers done, at calibration tokens/s.
const LINE = '{"type":"progress","id":"quantize:layers","unit":"layers","current":6,"total":24,"rate":1834.2,"rate_unit":"tokens","ts":1000}';

describe("progress counted in layers at a rate of tokens", () => {
  it("reads the recipe's event instead of dropping it as an unknown unit", () => {
    expect(parseEventLine(LINE)).toEqual({ type: "progress", ts: 1000, id: "quantize:layers", unit: "layers", current: 6, total: 24, rate: 1834.2, rateUnit: "tokens" });
  });

  it("says layers done, tokens/s, and a time left from the layers' own pace", () => {
    // 6 of 24 layers in 30 s: 5 s a layer, 18 left → 1m30s. The token rate says nothing about layers.
    const p = progressParts({ current: 6, total: 24, unit: "layers", rate: 1834.2, rateUnit: "tokens", elapsed: 30 });
    expect(p).toEqual({ percent: "25%", amount: "6/24 layers", rate: "1834 tokens/s", eta: "ETA 1m30s" });
  });

  it("prints it as one plain line", () => {
    const lines: string[] = [];
    const write = plainEventWriter((l) => lines.push(l), false);
    const title = "Quantizing layers (GPTQ 4-bit, g128)";
    write({ type: "step", id: "quantize:layers", status: "start", title, ts: 0 } as SlmEvent);
    write({ ...(parseEventLine(LINE) as SlmEvent), ts: 30_000 });
    expect(lines[1]).toBe(`  ${title}: 25%  6/24 layers  1834 tokens/s  ETA 1m30s`);
  });
});
