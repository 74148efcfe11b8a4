import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { MissingDependencyError } from "../../core/errors.js";
import { emit, type BackendContext } from "../../core/events.js";
import { exec, findExecutable, pathDirs } from "../../core/exec.js";
import { withLock } from "../../core/lock.js";
import { packageRoot } from "../../core/paths.js";
import { loadOrt, ortInstallDir } from "./ort.js";

/**
 * `slm setup onnx` and doctor's ONNX line. onnxruntime-node is a devDependency of slm (a clone has it;
 * `npm i -g slm` does not), because as a dependency its install script would download CUDA binaries
 * from outside the npm registry on every linux/x64 install and fail offline; as an optional dependency
 * that failure drops it silently. Global installs get it here, on demand, from the registry only.
 */

export interface OrtStatus {
  available: boolean;
  version?: string;
  /** The package folder it was loaded from. */
  dir?: string;
  /** "project": slm's own node_modules (a clone); "slm-home": installed by `slm setup onnx`. */
  origin?: "project" | "slm-home";
  /**
   * Execution providers this build can use now: cpu always; cuda when its provider library is present.
   * slm itself runs ONNX models on the CPU provider only (session.ts), so this is information, not a choice.
   */
  providers: string[];
  error?: string;
}

/** The onnxruntime-node version slm is built and tested against: its package.json's pin. */
export function pinnedOrtVersion(): string {
  const pkg = JSON.parse(readFileSync(path.join(packageRoot(), "package.json"), "utf8")) as Record<string, Record<string, string> | undefined>;
  const v = pkg.devDependencies?.["onnxruntime-node"] ?? pkg.dependencies?.["onnxruntime-node"] ?? pkg.optionalDependencies?.["onnxruntime-node"];
  if (!v) throw new Error("package.json names no onnxruntime-node version");
  return v;
}

/** The onnxruntime-node package folder that loadOrt() uses, or undefined when there is none. */
export function ortPackageDir(): { dir: string; origin: OrtStatus["origin"] } | undefined {
  const candidates: [string, OrtStatus["origin"]][] = [[path.join(packageRoot(), "package.json"), "project"], [path.join(ortInstallDir(), "package.json"), "slm-home"]];
  for (const [manifest, origin] of candidates) {
    if (!existsSync(manifest)) continue;
    try {
      return { dir: path.dirname(createRequire(manifest).resolve("onnxruntime-node/package.json")), origin };
    } catch {
      // not installed there
    }
  }
  return undefined;
}

/** The CUDA execution provider's library, which onnxruntime-node's installer adds to its binaries folder. */
function hasCudaProvider(dir: string): boolean {
  return existsSync(path.join(dir, "bin", "napi-v6", `${process.platform}`, process.arch, "libonnxruntime_providers_cuda.so"));
}

export async function ortStatus(): Promise<OrtStatus> {
  const where = ortPackageDir();
  try {
    const ort = await loadOrt();
    const version = ort.env.versions.node ?? ort.env.versions.common;
    // listSupportedBackends names what this build knows; a non-bundled one needs its installed library.
    const known = ort.listSupportedBackends().filter((b) => b.name === "cpu" || (b.name === "cuda" && where && hasCudaProvider(where.dir)));
    return { available: true, version, dir: where?.dir, origin: where?.origin, providers: known.map((b) => b.name) };
  } catch (err) {
    return { available: false, providers: [], error: err instanceof MissingDependencyError ? undefined : (err as Error).message };
  }
}

export interface OrtInstallResult {
  version: string;
  dir: string;
  installed: boolean;
  seconds: number;
}

/**
 * Installs onnxruntime-node (slm's pinned version) into $SLM_HOME/onnx with `npm install --ignore-scripts`
 * (the CPU binaries are in the package), built in a temporary folder and renamed into place, so a failed
 * or interrupted install leaves nothing. No CUDA provider: slm runs ONNX models on the CPU provider only,
 * so the package's own installer (which downloads CUDA libraries from NuGet) is never run.
 */
export async function installOrt(o: { force?: boolean }, ctx: BackendContext = {}): Promise<OrtInstallResult> {
  const started = Date.now();
  const version = pinnedOrtVersion();
  const dest = ortInstallDir();
  const seconds = () => (Date.now() - started) / 1000;
  return withLock("setup-onnx", async () => {
    let where = o.force ? undefined : ortPackageDir();
    let installed = false;
    if (!where) {
      const npm = await findExecutable("npm", [...pathDirs(), path.dirname(process.execPath)]);
      if (!npm) throw new MissingDependencyError("npm is not on PATH; slm setup onnx installs onnxruntime-node with it.", "install Node.js with npm");
      const tmp = `${dest}.tmp-${process.pid}`;
      rmSync(tmp, { recursive: true, force: true });
      mkdirSync(tmp, { recursive: true });
      try {
        writeFileSync(path.join(tmp, "package.json"), `${JSON.stringify({ name: "slm-onnxruntime", private: true, description: "onnxruntime-node for slm (slm setup onnx)" }, null, 2)}\n`);
        emit(ctx.onEvent, { type: "step", id: "onnx:install", status: "start", title: `Installing onnxruntime-node ${version} from the npm registry` });
        await exec(npm, ["install", "--prefix", tmp, "--ignore-scripts", "--no-audit", "--no-fund", "--no-save", "--omit=dev", `onnxruntime-node@${version}`], {
          signal: ctx.signal,
          label: "npm install",
          buffer: false,
          onLine: (line) => line.trim() && emit(ctx.onEvent, { type: "log", level: "debug", message: line }),
        });
        const pkgDir = path.join(tmp, "node_modules", "onnxruntime-node");
        await checkLoads(pkgDir, ctx);
        rmSync(dest, { recursive: true, force: true });
        renameSync(tmp, dest);
      } catch (err) {
        rmSync(tmp, { recursive: true, force: true });
        emit(ctx.onEvent, { type: "step", id: "onnx:install", status: "fail", title: "onnxruntime-node", detail: (err as Error).message });
        throw err;
      }
      emit(ctx.onEvent, { type: "step", id: "onnx:install", status: "done", title: `onnxruntime-node ${version}`, detail: dest });
      installed = true;
      where = { dir: path.join(dest, "node_modules", "onnxruntime-node"), origin: "slm-home" };
    }
    return { version, dir: where.dir, installed, seconds: seconds() };
  });
}

/** The installed package loads in a fresh Node (its native binding included) before it replaces anything. */
async function checkLoads(pkgDir: string, ctx: BackendContext): Promise<void> {
  await exec(process.execPath, ["-e", `require(${JSON.stringify(pkgDir)}).listSupportedBackends()`], { signal: ctx.signal, label: "node (loading onnxruntime-node)" });
}
