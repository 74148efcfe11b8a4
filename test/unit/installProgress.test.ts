import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { type InstallUpdate, installProgress, parseSize, pipHasRawProgress } from "../../src/backends/python/installProgress.js";
import { ROOT } from "../helpers/cli.js";

const recorded = (name: string) => readFileSync(path.join(ROOT, "test", "fixtures", "pip", name), "utf8").split("\n");
const updates = (lines: string[]) => {
  const read = installProgress();
  return lines.map(read).filter((u): u is InstallUpdate => u !== undefined);
};

describe("what pip is doing, from its own output (test/fixtures/pip)", () => {
  it("pip 23.2 without a byte count: the package, the file and its size, the install", () => {
    expect(updates(recorded("pip-23.2.1-off.txt"))).toEqual([
      { detail: "collecting torch", packages: 1 },
      { detail: "downloading torch-2.13.0-py3-none-any.whl (3.0 MB)", packages: 1 },
      { detail: "installing torch", packages: 1 },
    ]);
  });

  it("pip 26 with --progress-bar raw: the bytes of the download as they come", () => {
    const u = updates(recorded("pip-26.2.1-raw.txt"));
    expect(u.map((x) => x.detail)).toEqual([
      "collecting torch",
      "downloading torch-2.13.0-py3-none-any.whl (3.0 MB)",
      "downloading torch-2.13.0-py3-none-any.whl",
      "downloading torch-2.13.0-py3-none-any.whl",
      "downloading torch-2.13.0-py3-none-any.whl",
      "installing torch",
    ]);
    expect(u.filter((x) => x.bytes).map((x) => x.bytes)).toEqual([
      { current: 0, total: 3001138 },
      { current: 262144, total: 3001138 },
      { current: 3001138, total: 3001138 },
    ]);
  });

  it("uv's summary lines, several packages, cached files", () => {
    const u = updates(["Using cached numpy-2.3.1-cp311-cp311-manylinux_2_28_x86_64.whl (16.6 MB)", "Resolved 42 packages in 1.20s", "Prepared 3 packages in 12.4s", "Installing collected packages: numpy, torch, peft", "Installed 42 packages in 812ms"]);
    expect(u.map((x) => x.detail)).toEqual(["using cached numpy-2.3.1-cp311-cp311-manylinux_2_28_x86_64.whl (16.6 MB)", "resolved 42 packages", "prepared 3 packages", "installing 3 packages", "installed 42 packages"]);
  });

  it("reads sizes and which pip has the raw bar", () => {
    expect(parseSize("190.5 MB")).toBe(190_500_000);
    expect(parseSize("712 kB")).toBe(712_000);
    expect(parseSize("12MiB")).toBe(12 * 1024 ** 2);
    expect(parseSize("many")).toBeUndefined();
    expect(pipHasRawProgress("pip 23.2.1 from /x (python 3.11)")).toBe(false);
    expect(pipHasRawProgress("pip 24.0 from /x (python 3.12)")).toBe(false);
    expect(pipHasRawProgress("pip 24.1 from /x (python 3.12)")).toBe(true);
    expect(pipHasRawProgress("pip 26.2.1 from /x (python 3.11)")).toBe(true);
    expect(pipHasRawProgress("")).toBe(false);
  });
});
