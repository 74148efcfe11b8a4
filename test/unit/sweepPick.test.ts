import { describe, expect, it } from "vitest";
import { type Candidate, closest, paretoFront, recommend, verdict } from "../../src/backends/quantize/sweepPick.js";
import { sweepTypes } from "../../src/backends/quantize/sweep.js";

const c = (size: number, kld: number, ...scores: number[]): Candidate => ({ size, kld, scores });

describe("quantization sweep: Pareto front", () => {
  it("drops a type that another beats on size and KLD", () => {
    // The second is larger and further from the source than the first: dominated.
    expect(paretoFront([c(100, 0.01), c(120, 0.02), c(50, 0.3)])).toEqual([true, false, true]);
  });

  it("a tie on every objective dominates neither", () => {
    expect(paretoFront([c(100, 0.01), c(100, 0.01)])).toEqual([true, true]);
  });

  it("with tasks, a larger type with a worse KLD stays on the front when it scores higher", () => {
    expect(paretoFront([c(100, 0.01, 0.9), c(120, 0.02, 0.95)])).toEqual([true, true]);
    expect(paretoFront([c(100, 0.01, 0.95), c(120, 0.02, 0.95)])).toEqual([true, false]);
  });
});

describe("quantization sweep: recommendation", () => {
  const rule = { maxKld: 0.05, maxDrop: 0.02, sourceScores: [] as number[] };

  it("is the smallest type whose mean KLD is under --max-kld", () => {
    const cs = [c(400, 0.001), c(300, 0.01), c(200, 0.049), c(100, 0.2)];
    expect(recommend(cs, rule)).toBe(2);
    expect(verdict(cs[3]!, rule)).toEqual({ kld: false, qualifies: false });
  });

  it("or the smallest whose every task score is within --max-drop of the source's", () => {
    const withTasks = { ...rule, sourceScores: [0.95, 0.8] };
    const cs = [c(400, 0.001, 0.95, 0.8), c(200, 0.3, 0.94, 0.79), c(100, 0.9, 0.96, 0.7)];
    expect(verdict(cs[1]!, withTasks)).toEqual({ kld: false, tasks: true, qualifies: true });
    // The smallest one drops 10 points on the second task.
    expect(verdict(cs[2]!, withTasks)).toEqual({ kld: false, tasks: false, qualifies: false });
    expect(recommend(cs, withTasks)).toBe(1);
  });

  it("is undefined when nothing qualifies; --keep best then keeps the closest to the source", () => {
    const cs = [c(300, 0.2), c(200, 0.1), c(100, 0.5)];
    expect(recommend(cs, rule)).toBeUndefined();
    expect(closest(cs)).toBe(1);
  });
});

describe("quantization sweep: type list", () => {
  it("defaults to Q8_0 … Q2_K, splits commas and upper-cases", () => {
    expect(sweepTypes([])).toEqual(["Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q3_K_M", "Q2_K"]);
    expect(sweepTypes(["q8_0,q4_k_m", "Q2_K"])).toEqual(["Q8_0", "Q4_K_M", "Q2_K"]);
  });

  it("refuses what is no quantization type, unquantized types and repeats", () => {
    expect(() => sweepTypes(["Q8_0", "banana"])).toThrow(/"BANANA" is not a quantization type/);
    expect(() => sweepTypes(["F16"])).toThrow(/F16 is not one/);
    expect(() => sweepTypes(["q8_0", "Q8_0"])).toThrow(/names Q8_0 twice/);
  });
});
