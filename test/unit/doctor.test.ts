import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statfsSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { FIX_LLAMA_CPP, FIX_PYTHON, parseCpuFlags, runDoctor, type DoctorCheck, type DoctorReport } from "../../src/backends/system/doctor.js";
import { formatReport } from "../../src/commands/doctor.js";

const posix = process.platform !== "win32";
const SENTINEL = "hf_SENTINEL_must_never_leak_0123456789";

let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(path.join(os.tmpdir(), "slm-doctor-"));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function script(dir: string, name: string, body: string, mode = 0o755): string {
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, name);
  writeFileSync(file, `#!/bin/sh\n${body}\n`);
  chmodSync(file, mode);
  return file;
}

function check(report: DoctorReport, name: string): DoctorCheck {
  const all = Object.values(report.sections).flat();
  const found = all.find((c) => c.name === name);
  if (!found) throw new Error(`no check named ${name}; have ${all.map((c) => c.name).join(", ")}`);
  return found;
}

/** Most scenarios are not about the GPU: a failing import keeps them fast and independent of the binding. */
const noLlama = async (): Promise<never> => {
  throw new Error("node-llama-cpp deliberately unavailable in this test");
};

/** An env with nothing on PATH but `bin`, so tools installed on the test machine cannot leak in. */
function isolatedEnv(extra: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const bin = path.join(tmp, "empty-bin");
  mkdirSync(bin, { recursive: true });
  return { HOME: tmp, PATH: bin, SLM_HOME: path.join(tmp, "home"), HF_HOME: path.join(tmp, "hf"), ...extra };
}

describe("runDoctor against process.env (real GPU probe)", () => {
  let report: DoctorReport;
  let fakeQuantize: string;
  const saved = { ...process.env };

  beforeAll(async () => {
    fakeQuantize = script(path.join(tmp, "path-bin"), "llama-quantize", "echo fake");
    process.env.PATH = `${path.join(tmp, "path-bin")}${path.delimiter}${process.env.PATH ?? ""}`;
    process.env.HF_TOKEN = SENTINEL;
    process.env.SLM_PYTHON = path.join(tmp, "no-such-python");
    process.env.SLM_HOME = path.join(tmp, "not", "yet", "created");
    delete process.env.SLM_LLAMA_CPP_DIR;
    report = await runDoctor();
  }, 60_000);
  afterAll(() => {
    for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
    Object.assign(process.env, saved);
  });

  it("reports the system facts that os and process report", () => {
    expect(report.system.cpu.cores).toBe(os.availableParallelism());
    expect(report.system.node.version).toBe(process.version);
    expect(report.system.node.meetsRequirement).toBe(Number(process.versions.node.split(".")[0]) >= 20);
    expect(report.system.memory.total).toBe(os.totalmem());
    expect(report.system.os).toEqual({ platform: process.platform, release: os.release(), arch: process.arch });
    expect(check(report, "node").status).toBe("ok");
  });

  it.runIf(process.platform === "linux")("reads CPU flags from /proc/cpuinfo", () => {
    const flags = new Set(/^flags\s*:(.*)$/m.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1]?.trim().split(/\s+/) ?? []);
    const features = report.system.cpu.features;
    expect(features).not.toBe("unknown");
    if (features !== "unknown" && flags.size > 0) {
      expect(features.avx2).toBe(flags.has("avx2"));
      expect(features.avx512f).toBe(flags.has("avx512f"));
      expect(features.fma).toBe(flags.has("fma"));
    }
  });

  it("finds a llama-quantize put on PATH", () => {
    expect(report.features.llamaCppTools.find((t) => t.name === "llama-quantize")?.path).toBe(fakeQuantize);
    expect(check(report, "llama-quantize")).toMatchObject({ status: "ok", detail: fakeQuantize });
  });

  it("says a token is set without ever including it", () => {
    expect(report.storage.hfToken).toEqual({ set: true, source: "HF_TOKEN" });
    expect(JSON.stringify(report)).not.toContain(SENTINEL);
    expect(formatReport(report, false)).not.toContain(SENTINEL);
  });

  it("reports a missing SLM_PYTHON as missing, with the fix, instead of falling back to python3", () => {
    expect(report.features.python.source).toBe("SLM_PYTHON");
    expect(report.features.python.path).toBeUndefined();
    const py = check(report, "python");
    expect(py.status).toBe("missing");
    expect(py.detail).toContain(path.join(tmp, "no-such-python"));
    expect(py.fix).toBe(FIX_PYTHON);
    expect(check(report, "fine-tuning stack").status).toBe("missing");
  });

  it("measures free space on the nearest existing folder when SLM_HOME does not exist yet", () => {
    const home = report.storage.home;
    expect(home.path).toBe(path.join(tmp, "not", "yet", "created"));
    expect(home.exists).toBe(false);
    expect(home.measured).toBe(tmp);
    const s = statfsSync(tmp);
    expect(home.total).toBe(s.blocks * s.bsize);
    expect(home.free).toBeGreaterThan(0);
    expect(report.storage.paths.home).toBe(home.path);
  });

  it("reports what node-llama-cpp sees, or why it could not look", () => {
    const gpu = check(report, "gpu");
    if (report.gpu.type === null) {
      expect(gpu.status).toBe("error");
      expect(report.gpu.error).toBeTruthy();
    } else if (report.gpu.type === false) {
      expect(gpu.status).toBe("warn");
      expect(report.gpu.vram).toBeUndefined();
    } else {
      expect(["cuda", "vulkan", "metal"]).toContain(report.gpu.type);
      expect(gpu.status).toBe("ok");
      expect(report.gpu.vram?.total).toBeGreaterThan(0);
    }
  });
});

describe("runDoctor with an isolated environment", () => {
  it("turns a failing node-llama-cpp into a failed check with the reason, and still reports everything else", async () => {
    const report = await runDoctor({}, { env: isolatedEnv({}), importLlama: noLlama });
    expect(report.gpu.type).toBeNull();
    expect(check(report, "gpu")).toMatchObject({ status: "error" });
    expect(check(report, "gpu").detail).toContain("deliberately unavailable");
    expect(report.system.cpu.cores).toBe(os.availableParallelism());
  });

  it("marks every llama.cpp tool missing, and cmake/python missing, when nothing is on PATH", async () => {
    const report = await runDoctor({}, { env: isolatedEnv({}), importLlama: noLlama });
    for (const t of ["llama-quantize", "llama-imatrix"]) {
      expect(check(report, t)).toMatchObject({ status: "missing", fix: FIX_LLAMA_CPP });
    }
    // slm eval computes perplexity itself and slm bench measures itself: these two are only for comparisons.
    for (const t of ["llama-perplexity", "llama-bench"]) {
      expect(check(report, t)).toMatchObject({ status: "warn", fix: FIX_LLAMA_CPP });
      expect(check(report, t).detail).toContain("slm does not need it");
      expect(check(report, t).detail).not.toMatch(/needed for/);
    }
    expect(check(report, "cmake").status).toBe("missing");
    // No fallback to a python3 on PATH: slm's Python is SLM_PYTHON or its own venv.
    expect(report.features.python).toMatchObject({ source: "none", command: path.join(tmp, "home", "venv") });
    expect(check(report, "python")).toMatchObject({ status: "missing", fix: "slm setup python" });
    expect(report.storage.hfToken).toEqual({ set: false });
  });

  it.runIf(posix)("finds the tools in SLM_LLAMA_CPP_DIR/build/bin, skipping files that are not executable", async () => {
    const dir = path.join(tmp, "llama.cpp");
    const bin = path.join(dir, "build", "bin");
    for (const t of ["llama-quantize", "llama-imatrix", "llama-perplexity"]) script(bin, t, "exit 0");
    script(bin, "llama-bench", "exit 0", 0o644);
    let report = await runDoctor({}, { env: isolatedEnv({ SLM_LLAMA_CPP_DIR: dir }), importLlama: noLlama });
    expect(check(report, "llama-quantize")).toMatchObject({ status: "ok", detail: path.join(bin, "llama-quantize") });
    expect(check(report, "llama-bench").status).toBe("warn");
    // A build tool is needed while a llama.cpp tool is still missing…
    expect(check(report, "cmake").status).toBe("missing");

    chmodSync(path.join(bin, "llama-bench"), 0o755);
    report = await runDoctor({}, { env: isolatedEnv({ SLM_LLAMA_CPP_DIR: dir }), importLlama: noLlama });
    expect(report.features.llamaCppTools.every((t) => t.path?.startsWith(bin))).toBe(true);
    // …and only worth a note once all of them are there.
    expect(check(report, "cmake").status).toBe("warn");
  });

  it.runIf(posix)("asks SLM_PYTHON which ML modules it has, with versions, and names the missing ones", async () => {
    const gone = { error: "ModuleNotFoundError: No module named x" };
    const answer = {
      version: "3.99.1",
      modules: { torch: { version: "2.11.0+cpu" }, transformers: gone, peft: gone, accelerate: { version: "1.15.0" }, safetensors: { version: "0.8.0" }, sentencepiece: { version: "0.2.1" }, bitsandbytes: gone },
      torch: { cuda: null, gpu: false, devices: [] },
    };
    // Answers only when called the way doctor must call it (modules imported for real), so a changed invocation fails the test.
    const py = script(path.join(tmp, "py"), "python", `[ "$1" = "-c" ] || exit 3\ncase "$2" in *import_module*) echo '${JSON.stringify(answer)}' ;; *) exit 4 ;; esac`);
    const report = await runDoctor({}, { env: isolatedEnv({ SLM_PYTHON: py }), importLlama: noLlama });
    expect(report.features.python).toMatchObject({ source: "SLM_PYTHON", path: py, version: "3.99.1", modules: { torch: { version: "2.11.0+cpu" }, peft: gone } });
    expect(check(report, "python")).toMatchObject({ status: "ok" });
    const stack = check(report, "fine-tuning stack");
    expect(stack).toMatchObject({ status: "missing", fix: FIX_PYTHON });
    expect(stack.detail).toMatch(/^missing transformers \(.*\), peft/);
    expect(stack.detail).toContain("has torch 2.11.0+cpu, accelerate 1.15.0");
    expect(check(report, "bitsandbytes")).toMatchObject({ status: "warn", fix: "slm setup python --qlora" });
    expect(check(report, "torch GPU")).toMatchObject({ status: "warn" });
    expect(check(report, "torch GPU").detail).toContain("CPU-only torch");
  });

  it.runIf(posix)("reports the versions and the GPU torch sees when the stack is complete", async () => {
    const modules = Object.fromEntries(["torch", "transformers", "peft", "accelerate", "safetensors", "sentencepiece", "bitsandbytes"].map((m, i) => [m, { version: `1.${i}` }]));
    const answer = { version: "3.12.3", modules, torch: { cuda: "12.8", gpu: true, devices: ["NVIDIA H100 80GB HBM3"] } };
    const py = script(path.join(tmp, "py-full"), "python", `echo '${JSON.stringify(answer)}'`);
    const report = await runDoctor({}, { env: isolatedEnv({ SLM_PYTHON: py }), importLlama: noLlama });
    expect(check(report, "fine-tuning stack")).toMatchObject({ status: "ok", detail: "torch 1.0, transformers 1.1, peft 1.2, accelerate 1.3, safetensors 1.4, sentencepiece 1.5" });
    expect(check(report, "bitsandbytes")).toMatchObject({ status: "ok", detail: "1.6" });
    expect(check(report, "torch GPU")).toMatchObject({ status: "ok", detail: "CUDA 12.8: NVIDIA H100 80GB HBM3" });
  });

  it.runIf(posix)("prefers $SLM_HOME/venv/bin/python and reports a Python that fails, with its stderr", async () => {
    const home = path.join(tmp, "venv-home");
    const py = script(path.join(home, "venv", "bin"), "python", "echo 'ModuleNotFoundError: boom' >&2\nexit 1");
    const report = await runDoctor({}, { env: isolatedEnv({ SLM_HOME: home }), importLlama: noLlama });
    expect(report.features.python).toMatchObject({ source: "venv", path: py });
    const c = check(report, "python");
    expect(c.status).toBe("error");
    expect(c.detail).toContain("boom");
  });

  it("reflects HF_HUB_OFFLINE and HF_ENDPOINT", async () => {
    const report = await runDoctor({}, { env: isolatedEnv({ HF_HUB_OFFLINE: "1", HF_ENDPOINT: "http://127.0.0.1:9/" }), importLlama: noLlama });
    expect(report.storage.offline).toBe(true);
    expect(report.storage.endpoint).toBe("http://127.0.0.1:9");
    expect(check(report, "hub").status).toBe("warn");
  });
});

describe("parseCpuFlags", () => {
  it("maps x86 flags, including the ones named differently in /proc/cpuinfo", () => {
    const f = parseCpuFlags("processor\t: 0\nflags\t\t: fpu pni avx fma f16c avx512f avx512_vnni\n");
    expect(f).toMatchObject({ sse3: true, avx: true, avx2: false, fma: true, f16c: true, avx512f: true, avx512vnni: true });
  });
  it("maps ARM features", () => {
    const f = parseCpuFlags("processor\t: 0\nFeatures\t: fp asimd asimdhp asimddp i8mm\n");
    expect(f).toEqual({ neon: true, fp16: true, dotprod: true, i8mm: true, sve: false, bf16: false });
  });
  it("says unknown when there is nothing to read", () => {
    expect(parseCpuFlags("")).toBe("unknown");
  });
});

describe("formatReport", () => {
  it("aligns checks under section titles and lists each fix once", async () => {
    const report = await runDoctor({}, { env: isolatedEnv({}), importLlama: noLlama });
    const text = formatReport(report, false);
    for (const title of ["System", "GPU", "Storage", "Features", "To fix"]) expect(text.split("\n")).toContain(title);
    expect(text).toMatch(/^ {2}✗ llama-quantize +not found/m);
    expect(text).toMatch(/^ {2}✓ node +v\d+/m);
    expect(text.split("\n").filter((l) => l.includes(FIX_LLAMA_CPP))).toHaveLength(1);
    expect(text).not.toContain("\x1b[");
    const detailColumns = new Set(
      text
        .split("\n")
        .filter((l) => /^ {2}[✓!✗] /.test(l))
        .map((l) => 4 + l.slice(4).search(/ {2}\S/)),
    );
    expect(detailColumns.size).toBe(1);
  });
});
