import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { derivedName } from "../../src/backends/store/derived.js";
import { displayName, hfFolderModelId, modelIdOf, shortName } from "../../src/backends/store/naming.js";
import type { ModelEntry } from "../../src/backends/store/types.js";
import { FIXTURE } from "../helpers/cli.js";

const HF = path.join(FIXTURE, "hf");
const COMMIT = "ddd6b603d1444b8efd6242d950556a865d6db48a";

function folder(rel: string, config: Record<string, unknown> = {}): string {
  const dir = path.join(mkdtempSync(path.join(tmpdir(), "slm-naming-")), rel);
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, "config.json"), JSON.stringify(config));
  return dir;
}

const entry = (over: Partial<ModelEntry>): ModelEntry => ({ name: "x", format: "hf", path: "/x", files: [], source: { type: "local" }, size: 0, lineage: [], createdAt: "", ...over });

describe("one name for a model, whoever names it", () => {
  it("a folder is named by the model it holds: a snapshot by its repo, a generic folder by config or parent", () => {
    expect(hfFolderModelId(HF)).toBe("tiny-arith");
    expect(hfFolderModelId(`/c/hub/models--HuggingFaceTB--SmolLM2-135M/snapshots/${COMMIT}`)).toBe("HuggingFaceTB/SmolLM2-135M");
    expect(hfFolderModelId("/x/My-Model")).toBe("My-Model");
    // _name_or_path names the model when the folder does not; a path on someone's machine does not.
    expect(hfFolderModelId(folder("qwen/hf", { _name_or_path: "Qwen/Qwen2.5-0.5B" }))).toBe("Qwen/Qwen2.5-0.5B");
    expect(hfFolderModelId(folder("qwen/merged", { _name_or_path: "/home/me/checkpoints/x" }))).toBe("qwen");
    expect(hfFolderModelId(folder("mine", { _name_or_path: "Qwen/Qwen2.5-0.5B" }))).toBe("mine");
  });

  it("convert, quantize and finetune derive the same registry name from one source", () => {
    expect(derivedName(entry({ path: HF }), "F16")).toBe("tiny-arith-F16");
    expect(derivedName(entry({ path: `/c/models--acme--Tiny-Arith/snapshots/${COMMIT}` }), "F16")).toBe("Tiny-Arith-F16");
    expect(derivedName(entry({ name: "tiny-arith-f32.gguf", format: "gguf", path: "/m/tiny-arith-f32.gguf" }), "Q8_0")).toBe("tiny-arith-f32-Q8_0");
    // A registered model keeps the name the user knows it by; a fine-tune keeps its "+".
    expect(derivedName(entry({ name: "org/Repo-GGUF:Q8_0", format: "gguf", source: { type: "hub", repo: "org/Repo-GGUF", revision: "main", commit: COMMIT, endpoint: "" } }), "Q4_K_M")).toBe("Repo-GGUF-Q4_K_M");
    expect(derivedName(entry({ name: "tiny-arith+mysub", format: "gguf", source: { type: "derived" } }), "Q4_K_M")).toBe("tiny-arith+mysub-Q4_K_M");
    expect(shortName("org/Repo Name:Q8_0")).toBe("Repo-Name");
  });

  it("general.name is the id titled as llama.cpp's converter titles it", () => {
    expect(displayName(hfFolderModelId(HF))).toBe("Tiny Arith");
    expect(displayName("HuggingFaceTB/SmolLM2-135M-Instruct")).toBe("SmolLM2 135M Instruct");
    expect(modelIdOf(entry({ name: "phi-3-mini:hf", source: { type: "hub", repo: "microsoft/Phi-3-mini-4k-instruct", revision: "main", commit: COMMIT, endpoint: "" } }))).toBe("microsoft/Phi-3-mini-4k-instruct");
  });
});
