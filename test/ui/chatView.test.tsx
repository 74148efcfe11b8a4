import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { render } from "ink-testing-library";
import React from "react";
import { describe, expect, it } from "vitest";
import { CHAT_COMMANDS, type ChatEngineApi, type ChatMessage, type ChatReply, type ChatTranscript, type ContextUsage, type SendOptions } from "../../src/backends/llama/chat.js";
import { ChatView, tailLines } from "../../src/ui/ink/ChatView.js";
import { editLine, emptyLine, submitLine } from "../../src/ui/ink/chatInput.js";

const tick = (ms = 30) => new Promise((r) => setTimeout(r, ms));
/** Waits (up to 5 s) for file-backed commands like /save and /load, which finish later on a busy machine. */
async function until(cond: () => boolean): Promise<void> {
  for (const end = Date.now() + 5000; !cond() && Date.now() < end; ) await tick(20);
}
const KEY = { enter: "\r", up: "\u001B[A", down: "\u001B[B", ctrlC: "\u0003", backspace: "\u007F" };

/**
 * A stand-in for ChatEngine: the view is what these tests check, so the engine only records calls and
 * lets the test decide when each chunk of an answer arrives.
 */
class FakeEngine implements ChatEngineApi {
  system: string | undefined;
  messages: ChatMessage[] = [];
  sent: string[] = [];
  resets = 0;
  private pending: { text: string; o: SendOptions; resolve: (r: ChatReply) => void } | undefined;

  send(text: string, o: SendOptions = {}): Promise<ChatReply> {
    this.sent.push(text);
    this.messages.push({ role: "user", content: text });
    return new Promise((resolve) => {
      this.pending = { text: "", o, resolve };
      // Like ChatEngine (stopOnAbortSignal): an abort ends the answer with what was written so far.
      o.signal?.addEventListener("abort", () => this.finish("abort"));
    });
  }
  chunk(t: string): void {
    this.pending!.text += t;
    this.pending!.o.onText?.(t);
  }
  finish(stopReason = "eogToken"): void {
    const p = this.pending;
    if (!p) return;
    this.pending = undefined;
    this.messages.push({ role: "assistant", content: p.text });
    p.resolve({ text: p.text, stopReason, promptTokens: 5, completionTokens: 3, timings: { loadMs: 1, firstTokenMs: 2, totalMs: 3, tokensPerSecond: 123.4 }, context: this.contextUsed() });
  }
  reset(): void {
    this.resets++;
    this.messages = [];
  }
  setSystem(text: string | undefined): void {
    this.system = text;
    this.messages = [];
  }
  history(): ChatTranscript {
    return { version: 1, ...(this.system !== undefined ? { system: this.system } : {}), messages: [...this.messages] };
  }
  loadHistory(t: ChatTranscript): void {
    this.system = t.system;
    this.messages = [...t.messages];
  }
  contextUsed(): ContextUsage {
    return { used: this.messages.length * 7, size: 256 };
  }
}

async function type(stdin: { write: (s: string) => void }, text: string) {
  stdin.write(text);
  await tick();
}

function setup() {
  const engine = new FakeEngine();
  const view = render(<ChatView engine={engine} model="tiny-arith" />);
  return { engine, view, frame: () => view.lastFrame() ?? "" };
}

describe("ChatView", () => {
  it("sends the typed line on Enter, streams the answer, then shows speed and context in the status line", async () => {
    const { engine, view, frame } = setup();
    await tick();
    expect(frame()).toContain("tiny-arith · – tok/s · ctx 0/256");
    await type(view.stdin, "12+34");
    expect(frame()).toContain("› 12+34");
    expect(engine.sent).toEqual([]);
    await type(view.stdin, KEY.enter);
    expect(engine.sent).toEqual(["12+34"]);
    expect(frame()).toMatch(/you\s+12\+34/);
    expect(frame()).toContain("answering…");
    engine.chunk("4");
    await tick();
    expect(frame()).toMatch(/assistant\s+4\n/);
    engine.chunk("6");
    await tick();
    expect(frame()).toMatch(/assistant\s+46\n/);
    // Enter while an answer is being written does not send another message.
    await type(view.stdin, "again");
    await type(view.stdin, KEY.enter);
    expect(engine.sent).toEqual(["12+34"]);
    engine.finish();
    await tick();
    const done = frame();
    expect(done).toMatch(/you\s+12\+34\n\s*assistant\s+46/);
    expect(done).toContain("123.4 tok/s");
    expect(done).toContain("ctx 14/256");
    expect(done).not.toContain("answering…");
    // The line typed during the answer is still there and can be sent now.
    await type(view.stdin, KEY.enter);
    expect(engine.sent).toEqual(["12+34", "again"]);
    view.unmount();
  });

  it("recalls earlier lines with ↑ and goes back to the draft with ↓", async () => {
    const { engine, view, frame } = setup();
    for (const msg of ["first", "second"]) {
      await type(view.stdin, msg);
      await type(view.stdin, KEY.enter);
      engine.finish();
      await tick();
    }
    await type(view.stdin, "dra");
    await type(view.stdin, KEY.up);
    expect(frame()).toMatch(/› second/);
    await type(view.stdin, KEY.up);
    expect(frame()).toMatch(/› first/);
    await type(view.stdin, KEY.down);
    await type(view.stdin, KEY.down);
    expect(frame()).toMatch(/› dra/);
    await type(view.stdin, KEY.up);
    await type(view.stdin, KEY.up);
    await type(view.stdin, KEY.enter);
    expect(engine.sent).toEqual(["first", "second", "first"]);
    view.unmount();
  });

  it("/help lists every command, /reset clears the conversation, /system sets the prompt", async () => {
    const { engine, view, frame } = setup();
    await type(view.stdin, "/help");
    await type(view.stdin, KEY.enter);
    for (const c of CHAT_COMMANDS) expect(frame()).toContain(c.usage);
    expect(engine.sent).toEqual([]);

    await type(view.stdin, "1+1");
    await type(view.stdin, KEY.enter);
    engine.chunk("2");
    engine.finish();
    await tick();
    expect(frame()).toContain("ctx 14/256");
    await type(view.stdin, "/reset");
    await type(view.stdin, KEY.enter);
    expect(engine.resets).toBe(1);
    expect(engine.messages).toEqual([]);
    expect(frame()).toContain("Conversation cleared.");
    expect(frame()).toContain("ctx 0/256");

    await type(view.stdin, "/system Answer in French.");
    await type(view.stdin, KEY.enter);
    expect(engine.system).toBe("Answer in French.");
    expect(frame()).toContain("System prompt set");
    await type(view.stdin, "/system");
    await type(view.stdin, KEY.enter);
    expect(frame()).toContain("System prompt: Answer in French.");
    // "//" sends a message that starts with "/".
    await type(view.stdin, "//etc");
    await type(view.stdin, KEY.enter);
    expect(engine.sent).toEqual(["1+1", "/etc"]);
    view.unmount();
  });

  it("reports a bad command or file and keeps going; /save and /load round-trip", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "slm-chatview-"));
    const { engine, view, frame } = setup();
    await type(view.stdin, "/frobnicate");
    await type(view.stdin, KEY.enter);
    expect(frame()).toContain("✗ Unknown command /frobnicate");
    const bad = path.join(dir, "bad.json");
    writeFileSync(bad, JSON.stringify({ version: 1, messages: [{ role: "bot", content: "x" }] }));
    await type(view.stdin, `/load ${bad}`);
    await type(view.stdin, KEY.enter);
    expect(frame()).toContain('messages[0].role must be "user" or "assistant"');

    await type(view.stdin, "12+34");
    await type(view.stdin, KEY.enter);
    engine.chunk("46");
    engine.finish();
    await tick();
    const file = path.join(dir, "c.json");
    await type(view.stdin, `/save ${file}`);
    await type(view.stdin, KEY.enter);
    await until(() => frame().includes("Saved 2 messages"));
    expect(frame()).toContain("Saved 2 messages");
    expect(JSON.parse(readFileSync(file, "utf8"))).toEqual({ version: 1, messages: [{ role: "user", content: "12+34" }, { role: "assistant", content: "46" }] });
    await type(view.stdin, "/reset");
    await type(view.stdin, KEY.enter);
    await type(view.stdin, `/load ${file}`);
    await type(view.stdin, KEY.enter);
    await until(() => frame().includes("Loaded 2 messages"));
    expect(frame()).toContain("Loaded 2 messages");
    expect(engine.messages).toHaveLength(2);
    expect(frame()).toContain("ctx 14/256");
    view.unmount();
  });

  it("Ctrl+C stops an answer and keeps the partial text; Ctrl+C when idle leaves", async () => {
    const { engine, view, frame } = setup();
    await type(view.stdin, "count");
    await type(view.stdin, KEY.enter);
    engine.chunk("one two");
    await tick();
    await type(view.stdin, KEY.ctrlC);
    expect(frame()).toMatch(/assistant\s+one two \[stopped\]/);
    expect(frame()).toContain("/help · ↑↓ history");
    await type(view.stdin, KEY.ctrlC);
    await tick();
    // Leaving removes the input and status lines; the conversation stays in what was written. (The last
    // frame alone may be Ink's final empty write when the machine is busy, so look at all output.)
    expect(frame()).not.toContain("tok/s");
    expect(view.frames.join("\n")).toMatch(/you\s+count/);
    view.unmount();
  });

  it.each(["exit", "/bye", "Quit"])("%j leaves instead of being sent to the model", async (word) => {
    const { engine, view, frame } = setup();
    await type(view.stdin, word);
    await type(view.stdin, KEY.enter);
    await tick();
    expect(engine.sent).toEqual([]);
    expect(frame()).not.toContain("tok/s");
    view.unmount();
  });

  it("shows only the tail of a long streaming answer, and all of it once done", async () => {
    const { engine, view, frame } = setup();
    await type(view.stdin, "long");
    await type(view.stdin, KEY.enter);
    const lines = Array.from({ length: 60 }, (_, i) => `line ${i}`);
    engine.chunk(lines.join("\n"));
    await tick();
    expect(frame()).toContain("line 59");
    expect(frame()).not.toContain("line 0\n");
    engine.finish();
    await tick();
    expect(frame()).toContain("line 0\n");
    view.unmount();
  });
});

describe("the chat input line", () => {
  it("edits, keeps history without blank or repeated lines, and treats DEL as backspace", () => {
    let s = emptyLine();
    s = editLine(s, "helo", {});
    s = editLine(s, "", { leftArrow: true });
    s = editLine(s, "l", {});
    expect(s.value).toBe("hello");
    s = editLine(s, "", { delete: true });
    expect(s.value).toBe("helo");
    s = editLine(s, "a\nb", {});
    expect(s.value).toBe("hela bo");
    s = editLine(s, "u", { ctrl: true });
    expect(s.value).toBe("o");
    s = submitLine(editLine(s, "k", {}));
    s = submitLine(editLine(s, "ok", {}));
    s = submitLine(editLine(s, "   ", {}));
    expect(s.history).toEqual(["ko", "ok"]);
  });

  it("tailLines keeps the last rows of wrapped text", () => {
    expect(tailLines("a\nb\nc\nd", 10, 2)).toBe("c\nd");
    expect(tailLines("x".repeat(25), 10, 2)).toBe("x".repeat(20));
    expect(tailLines("short", 10, 5)).toBe("short");
  });
});
