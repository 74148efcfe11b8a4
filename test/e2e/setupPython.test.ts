import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, readdirSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { type Sandbox, interruptWhen, lastJson, sandbox, slm } from "../helpers/cli.js";

/**
 * `slm setup python` for real, on a machine that cannot reach PyPI (this one, and CI): the venv is
 * created, pip fails to connect, and the answer must be a NetworkError that says so, with nothing left
 * in $SLM_HOME but the unpacked llama.cpp scripts (a cache every later run reuses).
 */
const SLOW = 240_000;
/**
 * pip's view of the world without any package source: no config files (a machine may configure a local
 * mirror there, as this one does, from which the install would simply succeed) and no find-links.
 */
const NO_PACKAGE_SOURCES = { PIP_CONFIG_FILE: "/dev/null", PIP_FIND_LINKS: "", PIP_EXTRA_INDEX_URL: "" };

/** Writes a minimal valid wheel named torch 2.13.0 that holds 3 MB of random bytes. */
const STANDIN_WHEEL = `
import base64, hashlib, os, sys, zipfile
files = {"torch/__init__.py": b"", "torch/blob.bin": os.urandom(3_000_000),
         "torch-2.13.0.dist-info/METADATA": b"Metadata-Version: 2.1\\nName: torch\\nVersion: 2.13.0\\n",
         "torch-2.13.0.dist-info/WHEEL": b"Wheel-Version: 1.0\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n"}
record = [f"{k},sha256={base64.urlsafe_b64encode(hashlib.sha256(v).digest()).rstrip(b'=').decode()},{len(v)}" for k, v in files.items()]
files["torch-2.13.0.dist-info/RECORD"] = ("\\n".join(record + ["torch-2.13.0.dist-info/RECORD,,"]) + "\\n").encode()
with zipfile.ZipFile(sys.argv[1], "w") as z:
    for k, v in files.items():
        z.writestr(k, v)
`;

function leftovers(box: Sandbox): string[] {
  if (!existsSync(box.home)) return [];
  // locks/ and llama.cpp-py/ (the unpacked conversion scripts) are caches, not a half-made environment.
  return readdirSync(box.home).filter((n) => !["locks", "llama.cpp-py"].includes(n));
}

describe("slm setup python", () => {
  it("without access to PyPI: exit 4 with a clear NetworkError, and no venv, half or whole", async () => {
    // A proxy on a closed local port makes "no network" certain, even on a machine that has one.
    const sb = sandbox(undefined, { ...NO_PACKAGE_SOURCES, SLM_PYTHON: "", HTTPS_PROXY: "http://127.0.0.1:9", HTTP_PROXY: "http://127.0.0.1:9", https_proxy: "http://127.0.0.1:9", http_proxy: "http://127.0.0.1:9", PIP_RETRIES: "1", PIP_TIMEOUT: "5" });
    const r = await slm(["setup", "python", "--cpu", "--json"], sb);
    expect(r.exitCode, r.all).toBe(4);
    const err = lastJson(r.stdout).error!;
    expect(err.message).toContain("needs the Python Package Index");
    expect(err.message).toContain("cannot reach it");
    expect(err.hint).toContain("SLM_PYTHON");
    expect(err.hint).toContain("Nothing was installed");
    // It got as far as creating the environment and asking pip for torch.
    const events = r.stdout.trim().split("\n").map((l) => JSON.parse(l) as { type: string; id?: string; status?: string });
    expect(events).toContainEqual(expect.objectContaining({ type: "step", id: "python:venv", status: "done" }));
    expect(events).toContainEqual(expect.objectContaining({ type: "step", id: "python:torch", status: "fail" }));
    expect(leftovers(sb)).toEqual([]);
    expect(existsSync(path.join(sb.home, "llama.cpp-py"))).toBe(true);
  }, SLOW);

  it("Ctrl+C while it runs: exit 130 and nothing left", async () => {
    const sb = sandbox(undefined, { ...NO_PACKAGE_SOURCES, SLM_PYTHON: "", HTTPS_PROXY: "http://127.0.0.1:9", https_proxy: "http://127.0.0.1:9" });
    const child = slm(["setup", "python", "--cpu", "--json"], sb);
    interruptWhen(child, /"python:venv"/);
    const r = await child;
    expect(r.exitCode, r.all).toBe(130);
    expect(leftovers(sb)).toEqual([]);
  }, SLOW);

  it("shows what pip is doing as the step's progress: the package, the file being downloaded and its size, the install", async () => {
    // A package index of one stand-in torch wheel (a 3 MB blob; torch itself is ~200 MB), served locally.
    const dir = mkdtempSync(path.join(tmpdir(), "slm-index-"));
    const wheel = "torch-2.13.0-py3-none-any.whl";
    execFileSync("python3", ["-c", STANDIN_WHEEL, path.join(dir, wheel)]);
    const server = createServer((req, res) => {
      if (req.url === "/simple/torch/") {
        res.setHeader("content-type", "text/html");
        res.end(`<a href="/files/${wheel}">${wheel}</a>`);
      } else if (req.url === `/files/${wheel}`) res.end(readFileSync(path.join(dir, wheel)));
      else res.writeHead(404).end();
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const index = `http://127.0.0.1:${(server.address() as AddressInfo).port}/simple`;
    try {
      // The index for torch is local; the PyTorch index the requirements add goes through a closed proxy.
      const sb = sandbox(undefined, { ...NO_PACKAGE_SOURCES, PIP_INDEX_URL: index, SLM_PYTHON: "", HTTPS_PROXY: "http://127.0.0.1:9", https_proxy: "http://127.0.0.1:9", NO_PROXY: "127.0.0.1", no_proxy: "127.0.0.1", PIP_RETRIES: "0", PIP_TIMEOUT: "5" });
      const r = await slm(["setup", "python", "--cpu", "--json"], sb);
      const events = r.stdout.trim().split("\n").map((l) => JSON.parse(l) as { type: string; id?: string; status?: string; detail?: string; unit?: string });
      expect(events, r.all).toContainEqual(expect.objectContaining({ type: "step", id: "python:torch", status: "done" }));
      const torch = events.filter((e) => e.type === "progress" && e.id === "python:torch");
      expect(torch.map((e) => e.detail), r.all).toEqual(expect.arrayContaining(["collecting torch", `downloading ${wheel} (3.0 MB)`, "installing torch"]));
      // The rest of the stack is not in this index: that step fails, and nothing is left.
      expect(r.exitCode).not.toBe(0);
      expect(leftovers(sb)).toEqual([]);
    } finally {
      server.close();
    }
  }, SLOW);

  it("refuses flags that belong to llama.cpp, and llama.cpp refuses --qlora", async () => {
    const sb = sandbox();
    for (const args of [["setup", "python", "--vulkan"], ["setup", "python", "-j", "2"], ["setup", "llama.cpp", "--qlora"], ["setup", "python", "--cuda", "--cpu"]]) {
      const r = await slm(args, sb);
      expect(r.exitCode, `${args.join(" ")}: ${r.all}`).toBe(2);
    }
    expect(leftovers(sb)).toEqual([]);
  });
});
