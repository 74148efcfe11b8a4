/**
 * `slm quantize` against running `llama-quantize` directly, on the same input in the same run.
 *
 *   npx tsx bench/quantize.ts [--shape smollm2-135m|qwen2.5-0.5b] [--reps 3] [--types Q4_K_M,Q8_0]
 *                             [--threads N] [--setup] [--slm-bin PATH] [--keep-ca-certs]
 *
 * The input is a random-weight F16 GGUF of SmolLM2-135M's shape (or Qwen2.5-0.5B's), written by
 * bench/ggufWriter.ts to a temp folder. Both sides get the same llama-quantize binary, input, type and thread count; runs alternate
 * (order rotated each repetition) so drifts in machine load hit both. slm runs with a fresh SLM_HOME per
 * run and SLM_LLAMA_CPP_DIR pointing at the tools, and its --json events give its phases.
 *
 * --setup also times `slm setup llama.cpp --force` building from scratch into a temp SLM_HOME.
 *
 * NODE_EXTRA_CA_CERTS (set in the development sandbox) makes every node start read and parse a CA bundle,
 * +80 ms that a user's machine does not pay (see the startup bench); slm runs without it unless
 * --keep-ca-certs. llama-quantize is not affected either way.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { findTools } from "../src/backends/llamacpp/tools.js";
import { SHAPES, writeLlamaGguf } from "./ggufWriter.js";
import { BIN, arg, childrenCpuSeconds, machineCpuSeconds, markdownTable, median, printMachine, runBench, table } from "./lib.js";

const reps = Number(arg("--reps", "3"));
const types = arg("--types", "Q4_K_M,Q8_0").split(",").filter(Boolean);
const threads = Number(arg("--threads", String(Number(spawnSync("nproc", { encoding: "utf8" }).stdout.trim()) || 2)));
const slmBin = path.resolve(arg("--slm-bin", BIN));
const withSetup = process.argv.includes("--setup");
const keepCa = process.argv.includes("--keep-ca-certs");
const shapeName = arg("--shape", "smollm2-135m");
const shape = SHAPES[shapeName];
if (!shape) throw new Error(`--shape must be one of ${Object.keys(SHAPES).join(", ")}`);

interface Run {
  wall: number;
  /** CPU seconds other processes used meanwhile: a busy shared machine shows here. */
  others: number;
  phases?: { toFirstEvent: number; beforeTool: number; tool: number; afterTool: number };
}

/** Runs a command to completion and measures wall time and the machine's other CPU use. */
function timed(cmd: string, args: string[], env: NodeJS.ProcessEnv): { run: Run; stdout: string; start: number } {
  const busy0 = machineCpuSeconds().busy;
  const own0 = childrenCpuSeconds();
  const start = Date.now();
  const t0 = performance.now();
  const r = spawnSync(cmd, args, { env, encoding: "utf8", maxBuffer: 256 << 20 });
  const wall = (performance.now() - t0) / 1000;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} failed (${r.status}):\n${(r.stderr ?? "").slice(-2000)}\n${(r.stdout ?? "").slice(-2000)}`);
  const others = Math.max(0, machineCpuSeconds().busy - busy0 - (childrenCpuSeconds() - own0));
  return { run: { wall, others }, stdout: r.stdout, start };
}

function slmPhases(stdout: string, start: number, end: number): Run["phases"] {
  const events = stdout.trim().split("\n").map((l) => JSON.parse(l) as { type: string; ts: number; id?: string; status?: string });
  const first = events[0]!.ts;
  const toolStart = events.find((e) => e.type === "step" && e.id === "quantize:run" && e.status === "start")!.ts;
  const toolEnd = events.find((e) => e.type === "step" && e.id === "quantize:run" && e.status === "done")!.ts;
  return { toFirstEvent: (first - start) / 1000, beforeTool: (toolStart - first) / 1000, tool: (toolEnd - toolStart) / 1000, afterTool: (end - toolEnd) / 1000 };
}

async function main(): Promise<void> {
  printMachine();
  const [quantizeTool] = await findTools(["llama-quantize"]);
  if (!quantizeTool?.path) throw new Error("llama-quantize not found: run `slm setup llama.cpp` first (or set SLM_LLAMA_CPP_DIR).");
  const toolsDir = path.dirname(quantizeTool.path);
  console.log(`llama-quantize: ${quantizeTool.path} (${quantizeTool.origin}); ${threads} threads; ${reps} repetitions; types ${types.join(", ")}; slm ${keepCa ? "with" : "without"} NODE_EXTRA_CA_CERTS`);

  const work = mkdtempSync(path.join(tmpdir(), "slm-bench-quantize-"));
  try {
    const model = path.join(work, `${shapeName}-shaped-f16.gguf`);
    const g0 = performance.now();
    const { parameters, bytes } = writeLlamaGguf(model, shape);
    console.log(`input: ${shape.name}, ${(parameters / 1e6).toFixed(1)}M parameters, F16, ${(bytes / 1e6).toFixed(0)} MB, written in ${((performance.now() - g0) / 1000).toFixed(1)} s`);
    // Warm the page cache and llama-quantize's first start, untimed, so run 1 is not special.
    timed(quantizeTool.path, [model, path.join(work, "warm.gguf"), "Q8_0", String(threads)], process.env);
    rmSync(path.join(work, "warm.gguf"), { force: true });

    const rows: string[][] = [];
    const phaseRows: string[][] = [];
    for (const type of types) {
      const direct: Run[] = [];
      const viaSlm: Run[] = [];
      const sizes: number[] = [];
      for (let rep = 0; rep < reps; rep++) {
        const order = rep % 2 === 0 ? ["direct", "slm"] : ["slm", "direct"];
        for (const who of order) {
          if (who === "direct") {
            const out = path.join(work, `direct-${type}.gguf`);
            direct.push(timed(quantizeTool.path, [model, out, type, String(threads)], process.env).run);
            sizes.push(statSync(out).size);
            rmSync(out, { force: true });
          } else {
            const home = mkdtempSync(path.join(work, "home-"));
            const env: NodeJS.ProcessEnv = { ...process.env, SLM_HOME: home, SLM_LLAMA_CPP_DIR: toolsDir, CI: "1", NO_COLOR: "1" };
            if (!keepCa) delete env.NODE_EXTRA_CA_CERTS;
            const t = timed("node", [slmBin, "quantize", model, "--type", type, "--threads", String(threads), "--out", "bench", "--json"], env);
            t.run.phases = slmPhases(t.stdout, t.start, t.start + t.run.wall * 1000);
            viaSlm.push(t.run);
            rmSync(home, { recursive: true, force: true });
          }
        }
      }
      const d = median(direct.map((r) => r.wall));
      const s = median(viaSlm.map((r) => r.wall));
      // Best runs too: on a shared machine the minimum is the least disturbed figure of each side.
      const dMin = Math.min(...direct.map((r) => r.wall));
      const sMin = Math.min(...viaSlm.map((r) => r.wall));
      rows.push([
        type,
        direct.map((r) => r.wall.toFixed(2)).join(" / "),
        viaSlm.map((r) => r.wall.toFixed(2)).join(" / "),
        d.toFixed(2),
        s.toFixed(2),
        `${(((s - d) / d) * 100).toFixed(1)} %`,
        `${(((sMin - dMin) / dMin) * 100).toFixed(1)} %`,
        `${(s - d).toFixed(2)}`,
        `${Math.max(...[...direct, ...viaSlm].map((r) => r.others)).toFixed(1)}`,
        `${(median(sizes) / 1e6).toFixed(0)} MB`,
      ]);
      const ph = (k: keyof NonNullable<Run["phases"]>) => median(viaSlm.map((r) => r.phases![k])).toFixed(2);
      const own = median(viaSlm.map((r) => r.phases!.toFirstEvent + r.phases!.beforeTool + r.phases!.afterTool));
      phaseRows.push([type, ph("toFirstEvent"), ph("beforeTool"), ph("tool"), ph("afterTool"), own.toFixed(2)]);
    }
    const header = ["type", "llama-quantize runs s", "slm quantize runs s", "direct median s", "slm median s", "overhead (medians)", "overhead (best runs)", "overhead s (medians)", "max others' CPU s", "output"];
    console.log(`\n${table(header, rows)}\n`);
    const phaseHeader = ["slm phases (median s)", "spawn→1st event", "→ llama-quantize starts", "llama-quantize", "→ exit", "slm's own time"];
    console.log(`${table(phaseHeader, phaseRows)}\n`);
    console.log("markdown:\n");
    console.log(markdownTable(header, rows));
    console.log();
    console.log(markdownTable(phaseHeader, phaseRows));

    if (withSetup) {
      const home = mkdtempSync(path.join(work, "setup-home-"));
      console.log(`\nslm setup llama.cpp --force into ${home} (a full build)…`);
      const t = timed("node", [slmBin, "setup", "llama.cpp", "--force", "--json"], { ...process.env, SLM_HOME: home, CI: "1" });
      const result = JSON.parse(t.stdout.trim().split("\n").pop()!) as { data: { seconds: number; version: string } };
      console.log(`slm setup llama.cpp: ${t.run.wall.toFixed(0)} s wall (${(t.run.wall / 60).toFixed(1)} min), others' CPU ${t.run.others.toFixed(0)} s, ${result.data.version}`);
      const manifest = JSON.parse(readFileSync(path.join(home, "llama.cpp", readManifestDir(home), "build.json"), "utf8")) as { jobs: number; seconds: number };
      console.log(`build.json: ${manifest.seconds} s with ${manifest.jobs} jobs`);
    }
  } finally {
    if (!process.argv.includes("--keep")) rmSync(work, { recursive: true, force: true });
    else console.log(`kept ${work}`);
  }
}

function readManifestDir(home: string): string {
  return readdirSync(path.join(home, "llama.cpp")).find((n) => !n.startsWith("."))!;
}

runBench(main);
