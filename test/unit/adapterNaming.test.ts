import { describe, expect, it } from "vitest";
import { modelIdComponents } from "../../src/backends/adapters/naming.js";

// Expected values printed by gguf-py's Metadata.get_model_id_components / id_to_title (the llama.cpp
// release node-llama-cpp bundles) for an adapter (negative parameter count).
const CASES: [string, string, string | null, string | null, string | null, string | null][] = [
  // id, name, basename, finetune, version, size label
  ["lora-sub", "Lora Sub", null, null, null, null],
  ["Llama-3.2-1B-Instruct-lora", "Llama 3.2 1B Instruct Lora", "Llama-3.2", "Instruct", null, "1B"],
  ["smollm2-135m-sql-lora", "Smollm2 135m Sql Lora", "smollm2", "sql", null, "135M"],
  ["tinyllama-1.1b-chat-v1.0-qlora", "Tinyllama 1.1b Chat v1.0 Qlora", "tinyllama", "chat-qlora", "v1.0", "1.1B"],
  ["bloom-7b1-lora", "Bloom 7b1 Lora", "bloom", null, null, "7.1B"],
  ["phi-3-mini-4k-instruct-lora", "Phi 3 Mini 4k Instruct Lora", "phi-3", "4k-instruct", null, "mini"],
  ["Meta-Llama-3-8B-Instruct-128k-lora", "Meta Llama 3 8B Instruct 128k Lora", "Meta-Llama-3", "Instruct-128k", null, "8B"],
  ["my adapter", "My Adapter", null, null, null, null],
  ["foo_bar-baz", "Foo_Bar Baz", null, null, null, null],
];

describe("adapter naming, as llama.cpp's converter names a folder", () => {
  it.each(CASES)("%s", (id, name, basename, finetune, version, sizeLabel) => {
    const r = modelIdComponents(id, -1234567);
    expect([r.name, r.basename ?? null, r.finetune ?? null, r.version ?? null, r.sizeLabel ?? null]).toEqual([name, basename, finetune, version, sizeLabel]);
  });
});
