import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { readTask } from "../../src/backends/eval/tasks.js";
import { readTranscript } from "../../src/backends/llama/chat.js";
import { readJsonSchema } from "../../src/backends/llama/generate.js";
import { prepareCalibration } from "../../src/backends/quantize/calibration.js";
import { loadDataset } from "../../src/core/datasets/load.js";

/**
 * Files users write in editors that put a UTF-8 byte-order mark first (Notepad, Excel's "CSV UTF-8",
 * PowerShell): every reader of a user's text or JSON file takes them like the same file without it.
 */
const BOM = "\uFEFF";
const tmp = mkdtempSync(path.join(tmpdir(), "slm-bom-"));
function withBom(name: string, text: string): string {
  const f = path.join(tmp, name);
  writeFileSync(f, BOM + text);
  expect(readFileSync(f).subarray(0, 3)).toEqual(Buffer.from([0xef, 0xbb, 0xbf]));
  return f;
}
const chatLine = JSON.stringify({ messages: [{ role: "user", content: "12+34" }, { role: "assistant", content: "46" }] });

describe("a UTF-8 byte-order mark at the start of a file", () => {
  it("is accepted in a JSONL dataset (slm finetune)", () => {
    const d = loadDataset(withBom("train.jsonl", `${chatLine}\n${chatLine}\n`));
    expect(d.examples).toHaveLength(2);
    expect(JSON.stringify(d.examples[0])).not.toContain(BOM);
  });

  it("is accepted in an eval task file (slm eval --task)", () => {
    const t = readTask(withBom("task.jsonl", `${JSON.stringify({ prompt: "12+34", answer: "46" })}\n`));
    expect(JSON.stringify(t)).not.toContain(BOM);
    expect(JSON.stringify(t)).toContain('"12+34"');
  });

  it("is accepted in a saved chat (/load) and a JSON schema (--json-schema)", () => {
    expect(readTranscript(withBom("chat.json", JSON.stringify({ version: 1, messages: [{ role: "user", content: "hi" }] }))).messages).toEqual([{ role: "user", content: "hi" }]);
    expect(readJsonSchema(withBom("schema.json", '{"type":"string"}'))).toEqual({ type: "string" });
  });

  it("is not passed on as text by a plain-text calibration file", async () => {
    const out = path.join(tmp, "calibration.txt");
    const info = await prepareCalibration(withBom("calibration.txt", "Some text to calibrate on.\n"), "unused-for-text", out);
    expect(info.format).toBe("text");
    expect(readFileSync(out, "utf8")).toBe("Some text to calibrate on.\n");
  });
});
