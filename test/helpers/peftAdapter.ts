import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { FIXTURE } from "./cli.js";

export const LORA_SUB = path.join(FIXTURE, "lora-sub");

/** A copy of the fixture's PEFT adapter in a temp folder, with adapter_config.json changed by `patch`. */
export function copyAdapter(patch: (config: Record<string, unknown>) => void = () => {}, name = "lora-sub"): string {
  const dir = path.join(mkdtempSync(path.join(tmpdir(), "slm-peft-")), name);
  mkdirSync(dir);
  const config = JSON.parse(readFileSync(path.join(LORA_SUB, "adapter_config.json"), "utf8")) as Record<string, unknown>;
  patch(config);
  writeFileSync(path.join(dir, "adapter_config.json"), JSON.stringify(config, null, 2));
  copyFileSync(path.join(LORA_SUB, "adapter_model.safetensors"), path.join(dir, "adapter_model.safetensors"));
  return dir;
}

/** Writes a safetensors file of F32 tensors (name → shape; values 0.01·index). */
export function writeSafetensors(file: string, tensors: Record<string, number[]>): void {
  const header: Record<string, unknown> = {};
  const datas: Buffer[] = [];
  let at = 0;
  for (const [name, shape] of Object.entries(tensors)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = Buffer.from(Float32Array.from({ length: n }, (_, i) => 0.01 * i).buffer);
    header[name] = { dtype: "F32", shape, data_offsets: [at, at + data.length] };
    datas.push(data);
    at += data.length;
  }
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  writeFileSync(file, Buffer.concat([len, json, ...datas]));
}
