import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { FIXTURE, sandbox, slm } from "../helpers/cli.js";

const LORA = path.join(FIXTURE, "gguf", "lora-sub-f32.gguf");

interface Line {
  type: string;
  level?: string;
  message?: string;
  data?: { text: string; stopReason: string; promptTokens: number; completionTokens: number; timings: { totalMs: number; tokensPerSecond: number }; context: { used: number; size: number } };
}

const parseLines = (stdout: string): Line[] =>
  stdout
    .trim()
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Line);
const answers = (stdout: string) => parseLines(stdout).filter((l) => l.type === "result").map((l) => l.data!);

/**
 * The real ChatEngine over tiny-arith, through the line REPL (stdin is a pipe here). tiny-arith was
 * trained on single-turn chats: in a longer conversation it answers nothing, which these tests use to
 * tell whether earlier turns are really in the context.
 */
describe("slm chat (line REPL)", () => {
  const sb = sandbox();
  const dir = mkdtempSync(path.join(tmpdir(), "slm-chat-"));

  it("answers one line per message, keeps the conversation, and keeps stdout clean", async () => {
    const r = await slm(["chat", "tiny-arith", "-t", "0"], sb, { input: "12+34\n57-23\n" });
    expect(r.exitCode, r.all).toBe(0);
    const lines = r.stdout.split("\n");
    expect(lines[0]).toBe("46");
    // Every answer is one line, even an empty one (tiny-arith answers nothing in a second turn).
    expect(lines).toHaveLength(2);
    expect(r.stderr).toBe("");
  });

  it("--json: one result object per answer, with tokens, timings and the context used", async () => {
    const r = await slm(["chat", "tiny-arith", "-t", "0", "--json"], sb, { input: "12+34\n20+22\n/reset\n20+22\n" });
    expect(r.exitCode, r.all).toBe(0);
    const lines = parseLines(r.stdout);
    expect(lines.map((l) => l.type)).toEqual(["result", "result", "log", "result"]);
    const [a, b, c] = answers(r.stdout);
    expect(a!.text).toBe("46");
    // Counted as run and serve count (the templated prompt, as the HF chat template makes it), not by
    // the token meter, which said 7. The second turn's prompt is the whole conversation so far.
    expect(a!.promptTokens).toBe(8);
    expect(b!.promptTokens).toBe(8 + 3 + 7);
    expect(c!.promptTokens).toBe(8);
    expect(a!.completionTokens).toBeGreaterThanOrEqual(2);
    expect(a!.timings.totalMs).toBeGreaterThan(0);
    expect(a!.context.size).toBe(256);
    // The second turn adds to the context; /reset empties it, so 20+22 is then answered afresh.
    expect(b!.context.used).toBeGreaterThan(a!.context.used);
    expect(b!.text).not.toBe("42");
    expect(lines[2]).toMatchObject({ type: "log", level: "info", message: "Conversation cleared." });
    expect(c!.text).toBe("42");
    expect(c!.context.used).toBe(a!.context.used);
  });

  it("--lora works in chat: the adapter makes the model subtract", async () => {
    const r = await slm(["chat", "tiny-arith", "-t", "0", "--lora", LORA], sb, { input: "12+34\n/reset\n57-23\n" });
    expect(r.exitCode, r.all).toBe(0);
    const [first, second] = r.stdout.split("\n");
    expect(first).not.toBe("46");
    expect(second).toBe("34");
  });

  it("/save then /load round-trips the conversation through a file", async () => {
    const file = path.join(dir, "conv.json");
    const r = await slm(["chat", "tiny-arith", "-t", "0", "--json"], sb, { input: `12+34\n/save ${file}\n/reset\n/load ${file}\n20+22\n` });
    expect(r.exitCode, r.all).toBe(0);
    expect(JSON.parse(readFileSync(file, "utf8"))).toEqual({ version: 1, messages: [{ role: "user", content: "12+34" }, { role: "assistant", content: "46" }] });
    const logs = parseLines(r.stdout).filter((l) => l.type === "log");
    expect(logs.map((l) => l.message)).toEqual([`Saved 2 messages to ${file}.`, "Conversation cleared.", `Loaded 2 messages from ${file}.`]);
    // After /load the earlier turn is back in the context: 20+22 is the second turn, not a fresh one.
    const [first, second] = answers(r.stdout);
    expect(second!.text).not.toBe("42");
    expect(second!.context.used).toBeGreaterThan(first!.context.used);

    const edited = path.join(dir, "edited.json");
    writeFileSync(edited, JSON.stringify({ version: 1, system: "Add.", messages: [] }));
    const again = await slm(["chat", "tiny-arith", "-t", "0"], sb, { input: `/load ${edited}\n20+22\n/system\n` });
    expect(again.stdout).toBe("42");
    expect(again.stderr).toContain("System prompt: Add.");
  });

  it("/system and --system set the system prompt, which /save records", async () => {
    const file = path.join(dir, "sys.json");
    const r = await slm(["chat", "tiny-arith", "-t", "0", "--system", "Be exact."], sb, { input: `12+34\n/save ${file}\n/system Be brief.\n/system\n33+44\n/save ${file}.2\n` });
    expect(r.exitCode, r.all).toBe(0);
    expect(JSON.parse(readFileSync(file, "utf8")).system).toBe("Be exact.");
    const second = JSON.parse(readFileSync(`${file}.2`, "utf8"));
    // A new system prompt starts a new conversation.
    expect(second).toEqual({ version: 1, system: "Be brief.", messages: [{ role: "user", content: "33+44" }, { role: "assistant", content: "77" }] });
    expect(r.stderr).toContain("System prompt set; conversation cleared.");
    expect(r.stderr).toContain("System prompt: Be brief.");
    expect(r.stdout).toBe("46\n77");
  });

  it("a bad /load or an unknown command gives a clear error line and the REPL goes on", async () => {
    const bad = path.join(dir, "bad.json");
    writeFileSync(bad, JSON.stringify({ version: 1, messages: [{ role: "user", content: "1+1" }, { role: "system", content: "x" }] }));
    const notJson = path.join(dir, "notjson.json");
    writeFileSync(notJson, "{oops");
    const r = await slm(["chat", "tiny-arith", "-t", "0"], sb, { input: `/load ${path.join(dir, "missing.json")}\n/load ${bad}\n/load ${notJson}\n/load\n/nope\n12+34\n` });
    expect(r.exitCode, r.all).toBe(0);
    expect(r.stdout).toBe("46");
    const errors = r.stderr.split("\n").filter((l) => l.startsWith("error: "));
    expect(errors).toEqual([
      `error: Chat file not found: ${path.join(dir, "missing.json")}`,
      `error: ${bad}: messages[1].role must be "user" or "assistant" (got "system"); put the system prompt in "system".`,
      expect.stringMatching(new RegExp(`^error: ${notJson.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}: not valid JSON`)),
      "error: /load needs file: /load FILE.",
      expect.stringContaining("Unknown command /nope"),
    ]);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });

  it("/exit ends the REPL before EOF; blank lines are skipped", async () => {
    const r = await slm(["chat", "tiny-arith", "-t", "0"], sb, { input: "\n12+34\n\n/exit\n20+22\n" });
    expect(r.exitCode, r.all).toBe(0);
    expect(r.stdout).toBe("46");
  });

  it.each(["exit", "  Bye  "])("%j leaves the chat, as in Ollama, instead of going to the model", async (word) => {
    const r = await slm(["chat", "tiny-arith", "-t", "0"], sb, { input: `12+34\n${word}\n20+22\n` });
    expect(r.exitCode, r.all).toBe(0);
    expect(r.stdout).toBe("46");
  });

  it("a message that only starts with a leaving word is sent", async () => {
    const r = await slm(["chat", "tiny-arith", "-t", "0", "--json"], sb, { input: "exit.\n" });
    expect(r.exitCode, r.all).toBe(0);
    expect(answers(r.stdout)).toHaveLength(1);
  });

  it("Ctrl+C (SIGINT) ends the REPL with exit code 130, after the answers already given", async () => {
    const p = slm(["chat", "tiny-arith", "-t", "0"], sb);
    p.stdin!.write("12+34\n");
    // Interrupt once the first answer is complete (its line ended), while the REPL waits for the next line.
    let out = "";
    const onData = (d: Buffer) => {
      out += String(d);
      if (!out.includes("\n")) return;
      p.stdout!.off("data", onData);
      p.kill("SIGINT");
    };
    p.stdout!.on("data", onData);
    const r = await p;
    expect(r.exitCode).toBe(130);
    expect(r.stdout).toBe("46");
    expect(r.stderr).toContain("Cancelled");
  });

  it("gives the usual errors for a missing model or adapter", async () => {
    const missing = await slm(["chat", "no-such-model"], sb, { input: "" });
    expect(missing.exitCode).toBe(3);
    const noLora = await slm(["chat", "tiny-arith", "--lora", "/nonexistent/a.gguf"], sb, { input: "" });
    expect(noLora.exitCode).toBe(3);
  });
});
