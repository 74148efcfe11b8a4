import { describe, expect, it } from "vitest";
import { StopTextStream } from "../../src/backends/onnx/stops.js";

/** Feeds the text growing piece by piece; returns what was streamed and the final state. */
function play(stops: string[], pieces: string[]) {
  const s = new StopTextStream(stops);
  const shown: string[] = [];
  let text = "";
  for (const p of pieces) {
    text += p;
    shown.push(s.update(text));
    if (s.stopped) break;
  }
  shown.push(s.finish());
  return { streamed: shown.join(""), chunks: shown, final: s.finalText, stopped: s.stopped };
}

describe("stop strings (node-llama-cpp's customStopTriggers)", () => {
  it("ends at the stop string and leaves it and what follows out of the text", () => {
    const r = play(["\n\n"], ["Hello", " world", "\n", "\nmore"]);
    expect(r.stopped).toBe(true);
    expect(r.final).toBe("Hello world");
    expect(r.streamed).toBe("Hello world");
  });

  it("holds back text that may start a stop string until it is clear", () => {
    const s = new StopTextStream(["END"]);
    expect(s.update("abcE")).toBe("abc");
    expect(s.update("abcEN")).toBe("");
    // "ENd" is not "END": released.
    expect(s.update("abcENd")).toBe("ENd");
    expect(s.stopped).toBe(false);
  });

  it("a stop string split over tokens is found", () => {
    const r = play(["</answer>"], ["42", "</ans", "wer>", " tail"]);
    expect(r.final).toBe("42");
    expect(r.streamed).toBe("42");
  });

  it("the earliest of several stop strings wins", () => {
    const r = play(["b", "cd"], ["acdb"]);
    expect(r.final).toBe("a");
  });

  it("without a stop, everything is streamed by the end, held-back parts included", () => {
    const r = play(["XYZ"], ["one ", "two X"]);
    expect(r.stopped).toBe(false);
    expect(r.chunks.at(-1)).toBe("X");
    expect(r.streamed).toBe("one two X");
    expect(r.final).toBe("one two X");
  });

  it("holds back an unfinished UTF-8 character (U+FFFD at the end) until its last byte arrives", () => {
    const s = new StopTextStream([]);
    expect(s.update("caf\ufffd")).toBe("caf");
    expect(s.update("café")).toBe("é");
  });

  it("an empty stop string is ignored", () => {
    expect(play([""], ["abc"]).final).toBe("abc");
  });
});
