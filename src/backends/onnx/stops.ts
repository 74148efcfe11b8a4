/**
 * Streamed text with stop strings, as node-llama-cpp treats its `customStopTriggers`: generation ends at
 * the first stop string, which is left out of the text along with anything after it; text that might be
 * the start of a stop string is held back from the stream until the next tokens tell. An unfinished
 * UTF-8 character (the decoder's U+FFFD while a multi-byte character is split over tokens) is held back
 * too, so a stream never shows a replacement character the final text does not have.
 */
export class StopTextStream {
  private emitted = 0;
  private text = "";
  private stoppedAt: number | undefined;

  constructor(private readonly stops: readonly string[] = []) {}

  /** The stop strings matched so far ended generation. */
  get stopped(): boolean {
    return this.stoppedAt !== undefined;
  }

  /**
   * Takes the whole text generated so far; returns the new part that is safe to show (possibly empty).
   * After a stop string appears, `stopped` is true and nothing more is taken.
   */
  update(fullText: string): string {
    if (this.stopped) return "";
    this.text = fullText;
    const hit = this.firstStop(fullText);
    if (hit !== undefined) {
      this.stoppedAt = hit;
      return this.release(hit);
    }
    return this.release(this.safeLength(fullText));
  }

  /** At the end of generation: the rest of the text, held-back parts included. */
  finish(): string {
    return this.release(this.stoppedAt ?? this.text.length);
  }

  /** The final text: up to the stop string, or all of it. */
  get finalText(): string {
    return this.text.slice(0, this.stoppedAt ?? this.text.length);
  }

  private release(upTo: number): string {
    if (upTo <= this.emitted) return "";
    const chunk = this.text.slice(this.emitted, upTo);
    this.emitted = upTo;
    return chunk;
  }

  private firstStop(text: string): number | undefined {
    let first: number | undefined;
    for (const stop of this.stops) {
      if (stop.length === 0) continue;
      // Text already shown had no stop in it; a new one can start at most stop.length − 1 before its end.
      const i = text.indexOf(stop, Math.max(0, this.emitted - stop.length + 1));
      if (i >= 0 && (first === undefined || i < first)) first = i;
    }
    return first;
  }

  /** How much of `text` cannot be the start of a stop string or an unfinished character. */
  private safeLength(text: string): number {
    let safe = text.length;
    while (safe > this.emitted && text.charCodeAt(safe - 1) === 0xfffd) safe--;
    for (const stop of this.stops) {
      for (let k = Math.min(stop.length - 1, text.length); k > 0; k--) {
        if (text.endsWith(stop.slice(0, k))) {
          safe = Math.min(safe, text.length - k);
          break;
        }
      }
    }
    return Math.max(safe, this.emitted);
  }
}
