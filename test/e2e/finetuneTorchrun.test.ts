import { cpSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { execa } from "execa";
import { describe, expect, it, type TestContext } from "vitest";
import { FIXTURE, lastJson, slm } from "../helpers/cli.js";
import { adapterTensors, lossPoints, maxDifference, processesMentioning, realRecipe, runEvents } from "../helpers/finetuneRun.js";

/**
 * The recipe under a standard launcher: `slm finetune --prepare` makes a run folder, `torchrun --nnodes 1
 * --nproc-per-node 2` (torch's own launcher, from the test Python) trains in it on the CPU, and
 * `slm finetune --register` registers the result. Two torchrun processes with batch_size 4 must train what
 * one process trains with batch_size 4 and grad_accum 2 (as test/e2e/finetuneGpus.test.ts checks for slm's
 * own launcher with plain data), here on token-level distillation data (its loss is cross-entropy and KD
 * mixed, so one run checks both, and the CI budget affords one), rank 0 alone must write events, and a SIGTERM that reaches the workers twice (from the
 * scheduler and forwarded by torchrun) must still stop them at a step with a checkpoint that the recipe's
 * --resume continues to the same weights, also when the ranks do not share a disk.
 */
const HF = path.join(FIXTURE, "hf");
const SUB = path.join(FIXTURE, "data", "sub-train.jsonl");
const SLOW = 300_000;
const STEPS = 40;
const FLAGS = ["--max-steps", String(STEPS), "--lr", "5e-3", "--rank", "8", "--alpha", "16", "--batch-size", "4", "--device", "cpu"];

interface Prepared {
  name: string;
  runDir: string;
  config: string;
  recipe: string;
}

/** The prepared config with some keys changed, written beside it (the recipe's config is its protocol). */
function configWith(p: Prepared, file: string, change: Record<string, unknown>): string {
  const cfg = JSON.parse(readFileSync(p.config, "utf8")) as Record<string, unknown>;
  const out = path.join(path.dirname(p.runDir), file);
  writeFileSync(out, JSON.stringify({ ...cfg, ...change }));
  return out;
}

/** Runs the recipe with, on ranks other than 0, the config's output_dir + "-rank<N>". */
const OWN_DISK = `import json, os, runpy, sys
recipe = RECIPE
i = sys.argv.index("--config") + 1
rank = os.environ["RANK"]
if rank != "0":
    with open(sys.argv[i]) as f:
        cfg = json.load(f)
    cfg["output_dir"] += "-rank" + rank
    sys.argv[i] += ".rank" + rank
    with open(sys.argv[i], "w") as f:
        json.dump(cfg, f)
sys.argv[0] = recipe
runpy.run_path(recipe, run_name="__main__")
`;

/** argv: HF folder, chat JSONL, output, count. The first `count` records with a made-up teacher field. */
const KD_DATA = `import json, math, sys
from transformers import AutoTokenizer
hf, src, out, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
tok = AutoTokenizer.from_pretrained(hf)
v = len(tok)
with open(src) as f, open(out, "w") as o:
    for line in list(f)[:n]:
        r = json.loads(line)
        ids = tok(r["messages"][-1]["content"], add_special_tokens=False).input_ids
        r["teacher"] = {"tokens": ids, "top_ids": [[t, (t + 1) % v, (t + 2) % v] for t in ids],
                        "top_logprobs": [[math.log(0.6), math.log(0.25), math.log(0.1)] for _ in ids]}
        o.write(json.dumps(r) + "\\n")
`;

const real = realRecipe("the recipe under torchrun");
const need = (ctx: TestContext) => real.need(ctx);
const env = () => ({ ...real.sb.env, OMP_NUM_THREADS: "1" });
/** torch's launcher as the test Python has it (`torchrun` is this module's console script). */
const torchrun = (args: string[]) => execa(real.python!, ["-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2", ...args], { env: env(), reject: false });

describe("the fine-tune recipe under torchrun (two CPU processes)", () => {
  let prepared: Prepared | undefined;
  let trained: string | undefined;

  it("--prepare → torchrun → --register, with token-level distillation data: matches one process with --grad-accum 2, and the model runs", async (ctx) => {
    need(ctx);
    // A teacher's top-3 distribution for each answer token, in the student's own tokens (contract 1 of
    // slm distill --kd-logprobs): the answer's token first at 0.6, the next two ids at 0.25 and 0.1.
    const kdData = path.join(path.dirname(real.sb.home), "kd.jsonl");
    const made = await execa(real.python!, ["-c", KD_DATA, HF, SUB, kdData, "200"], { env: env(), reject: false });
    expect(made.exitCode, made.stderr).toBe(0);
    const prep = await slm(["finetune", HF, "--lora", kdData, "--out", "tr", ...FLAGS, "--prepare", "--json"], real.sb);
    expect(prep.exitCode, prep.all).toBe(0);
    const p = (prepared = lastJson(prep.stdout).data as Prepared);
    expect(p.runDir).toBe(path.join(real.sb.home, "runs", "tiny-arith+tr"));
    // Nothing is trained or registered yet, and registering says so.
    const early = await slm(["finetune", "--register", p.runDir], real.sb);
    expect(early.exitCode, early.all).toBe(2);
    expect(early.stderr).toMatch(/has not finished: no adapter\/ folder, no result\.json/);
    expect(early.stderr).toMatch(/torchrun/);
    expect(existsSync(path.join(real.sb.home, "models", "tiny-arith+tr"))).toBe(false);

    const two = await torchrun([p.recipe, "--config", p.config]);
    expect(two.exitCode, two.stderr).toBe(0);
    // Rank 0 alone speaks the protocol on the launcher's merged stdout: one of each step, one result.
    const events = runEvents(two.stdout);
    expect(events.filter((e) => e.type === "step" && e.id === "load" && e.status === "start")).toHaveLength(1);
    expect(events.filter((e) => e.type === "result")).toHaveLength(1);
    expect(events.some((e) => (e as { message?: string }).message?.startsWith("device cpu × 2 processes"))).toBe(true);
    // Every example trained on the teacher's distribution (none fell back to cross-entropy alone).
    expect(lastJson(two.stdout).data).toMatchObject({ kd: { examples: 200, misaligned: 0 } });
    trained = path.join(p.runDir, "adapter");

    // One process, the same recipe and data, batch_size 4 × grad_accum 2.
    const oneDir = path.join(real.sb.home, "one");
    const one = await execa(real.python!, [p.recipe, "--config", configWith(p, "one.json", { grad_accum: 2, output_dir: oneDir })], { env: env(), reject: false });
    expect(one.exitCode, one.stderr).toBe(0);
    const l2 = lossPoints(events);
    const l1 = lossPoints(runEvents(one.stdout));
    expect(l2.map(([s]) => s)).toEqual(l1.map(([s]) => s));
    expect(l1.at(-1)![1]).toBeLessThan(l1[0]![1] / 3); // training moved the loss far
    for (const [i, [, v]] of l2.entries()) expect(Math.abs(v / l1[i]![1] - 1), `loss at step ${l1[i]![0]}`).toBeLessThan(1e-5);
    expect(maxDifference(adapterTensors(trained), adapterTensors(path.join(oneDir, "adapter")))).toBeLessThan(1e-5);

    const reg = await slm(["finetune", "--register", p.runDir, "--json"], real.sb);
    expect(reg.exitCode, reg.all).toBe(0);
    expect(lastJson(reg.stdout).data).toMatchObject({ model: { name: "tiny-arith+tr" }, training: { steps: STEPS } });
    // It answers as the base GGUF with the one-process adapter does (converted by slm run --lora).
    const run = await slm(["run", "tiny-arith+tr", "57-23", "-t", "0"], real.sb);
    expect(run.exitCode, run.all).toBe(0);
    const baseGguf = path.join(real.sb.home, "models", "tiny-arith+tr", "base-f16.gguf");
    const oneRun = await slm(["run", baseGguf, "57-23", "-t", "0", "--lora", path.join(oneDir, "adapter")], real.sb);
    expect(oneRun.exitCode, oneRun.all).toBe(0);
    expect(run.stdout.trim()).toMatch(/^\d+$/);
    expect(run.stdout.trim()).toBe(oneRun.stdout.trim());
    const again = await slm(["finetune", "--register", p.runDir], real.sb);
    expect(again.exitCode).toBe(2);
    expect(again.stderr).toMatch(/registered already/);
  }, SLOW);

  it("a scheduler's SIGTERM to every process (torchrun forwards it too), each rank with a disk of its own: each stops after the same step, rank 0 saves; --resume ends where the uninterrupted run did", async (ctx) => {
    need(ctx);
    if (!prepared || !trained) ctx.skip("the uninterrupted torchrun run did not happen");
    const out = path.join(real.sb.home, "stopped");
    const config = configWith(prepared!, "stopped.json", { output_dir: out });
    // Two machines without shared storage, on one: rank 1 sees another output_dir (the wrapper gives it one).
    const wrapper = path.join(real.sb.home, "own_disk.py");
    writeFileSync(wrapper, OWN_DISK.replace("RECIPE", JSON.stringify(prepared!.recipe)));
    const child = torchrun([wrapper, "--config", config]);
    let seen = "";
    let sent = false;
    child.stdout!.on("data", (d: Buffer) => {
      seen += d.toString();
      if (!sent && /"id":"train","unit":"steps","current":([3-9]|[12]\d)\b/.test(seen)) {
        sent = true;
        // As SLURM's scancel or time limit does: every process of the job, the workers (which torchrun
        // starts in sessions of their own) as well as torchrun, which then sends the workers its own copy.
        for (const pid of processesMentioning(config)) process.kill(pid, "SIGTERM");
      }
    });
    const r = await child;
    expect(sent).toBe(true);
    const stoppedAt = /interrupted at step (\d+) of/.exec(r.stdout)?.[1];
    expect(stoppedAt, r.stderr).toBeDefined();
    expect(existsSync(path.join(out, "checkpoints", `step-${stoppedAt}`, "state.pt"))).toBe(true);
    expect(existsSync(path.join(out, "adapter"))).toBe(false);
    expect(processesMentioning(config)).toEqual([]);
    // Rank 1 wrote nothing; for --resume it needs rank 0's checkpoints at its own path (docs/finetune.md).
    expect(existsSync(`${out}-rank1`)).toBe(false);
    cpSync(path.join(out, "checkpoints"), path.join(`${out}-rank1`, "checkpoints"), { recursive: true });

    const resumed = await torchrun([wrapper, "--config", config, "--resume"]);
    expect(resumed.exitCode, resumed.stderr).toBe(0);
    const res = lastJson(resumed.stdout).data as { resumed_from: string; steps: number };
    expect(res.resumed_from).toMatch(new RegExp(`step-${stoppedAt}$`));
    expect(res.steps).toBe(STEPS);
    expect(maxDifference(adapterTensors(path.join(out, "adapter")), adapterTensors(trained!))).toBe(0);
  }, SLOW);
});
