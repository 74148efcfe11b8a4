import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { Template } from "@huggingface/jinja";
import { UsageError } from "../../core/errors.js";
import type { ChatTurn } from "../runtime/types.js";
import { tokenText } from "./tokenizer.js";

/**
 * The model's chat template as transformers finds it: `chat_template.jinja` (what transformers 5 writes)
 * first, else `chat_template` in tokenizer_config.json — a string, or a list of named templates of which
 * "default" is the one apply_chat_template uses.
 */
export function readChatTemplate(folder: string, config: Record<string, unknown>): string | undefined {
  const file = path.join(folder, "chat_template.jinja");
  if (existsSync(file)) return readFileSync(file, "utf8");
  const t = config.chat_template;
  if (typeof t === "string") return t;
  if (Array.isArray(t)) {
    const named = t as { name?: unknown; template?: unknown }[];
    const chosen = named.find((x) => x.name === "default") ?? named[0];
    if (typeof chosen?.template === "string") return chosen.template;
  }
  return undefined;
}

/** The special-token variables transformers hands a chat template (bos_token, eos_token…). */
export function templateTokens(config: Record<string, unknown>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const key of ["bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token", "mask_token"]) {
    const text = tokenText(config[key]);
    if (text !== undefined) out[key] = text;
  }
  return out;
}

/**
 * A conversation rendered as transformers' `apply_chat_template(messages, add_generation_prompt=True)`
 * renders it: the template gets `messages`, `add_generation_prompt` and the special tokens. The text is
 * then tokenized with special-token text parsed and nothing added (the template writes BOS itself).
 */
export class ChatTemplate {
  private readonly template: Template;

  constructor(
    source: string,
    private readonly tokens: Record<string, string>,
    private readonly modelName: string,
  ) {
    try {
      this.template = new Template(source);
    } catch (err) {
      throw new UsageError(`${modelName}'s chat template does not parse: ${(err as Error).message}`);
    }
  }

  render(messages: readonly ChatTurn[], addGenerationPrompt = true): string {
    try {
      return this.template.render({ ...this.tokens, messages: messages.map((m) => ({ role: m.role, content: m.content })), add_generation_prompt: addGenerationPrompt });
    } catch (err) {
      // Templates raise on conversations they do not take (raise_exception), e.g. a system message.
      throw new UsageError(`${this.modelName}'s chat template refused the conversation: ${(err as Error).message}`);
    }
  }
}
