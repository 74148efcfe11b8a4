import { randomUUID } from "node:crypto";
import type { RuntimeModel, ToolCallChunk, ToolDefinition, ToolOptions, TurnToolCall } from "../runtime/types.js";
import { HttpError } from "./httpError.js";

/**
 * OpenAI's tool calls on the wire: `tools`, `tool_choice` and `parallel_tool_calls` in, `tool_calls` in an
 * assistant message and its `role: "tool"` answers in the conversation, and `tool_calls` out (whole in a
 * response, piece by piece in stream deltas). The model's side is the runtime's (llama/tools.ts).
 */

type Body = Record<string, unknown>;

const bad = (param: string, message: string) => new HttpError(400, message, { param });
const isObject = (v: unknown): v is Body => typeof v === "object" && v !== null && !Array.isArray(v);
/** OpenAI's rule for function names. */
const NAME = /^[A-Za-z0-9_-]{1,64}$/;

function toolOf(t: unknown, i: number): ToolDefinition {
  const param = `tools[${i}]`;
  if (!isObject(t) || t.type !== "function" || !isObject(t.function)) throw bad(param, `${param} must be {"type": "function", "function": {"name", "description", "parameters"}}.`);
  const { name, description, parameters } = t.function;
  if (typeof name !== "string" || !NAME.test(name)) throw bad(`${param}.function.name`, `${param}.function.name must be 1–64 letters, digits, underscores or dashes.`);
  if (description !== undefined && description !== null && typeof description !== "string") throw bad(`${param}.function.description`, `${param}.function.description must be a string.`);
  if (parameters !== undefined && parameters !== null && !isObject(parameters)) throw bad(`${param}.function.parameters`, `${param}.function.parameters must be a JSON schema object.`);
  return { name, description: description ?? undefined, parameters: parameters ?? undefined };
}

/**
 * The request's tools and how they may be used; undefined when there are none or `tool_choice` is "none"
 * (the model then answers in text, as OpenAI's does).
 */
export function toolsOf(b: Body): ToolOptions | undefined {
  const raw = b.tools ?? undefined;
  if (raw !== undefined && !Array.isArray(raw)) throw bad("tools", "tools must be an array of functions.");
  const tools = (raw ?? []).map(toolOf);
  const names = new Set<string>();
  for (const t of tools) {
    if (names.has(t.name)) throw bad("tools", `tools has two functions named ${t.name}.`);
    names.add(t.name);
  }
  const parallel = b.parallel_tool_calls ?? true;
  if (typeof parallel !== "boolean") throw bad("parallel_tool_calls", "parallel_tool_calls must be true or false.");
  const c = b.tool_choice ?? undefined;
  if (c === undefined || c === "none" || c === "auto" || c === "required") {
    if (c === "required" && tools.length === 0) throw bad("tool_choice", 'tool_choice "required" needs tools.');
    return tools.length === 0 || c === "none" ? undefined : { tools, choice: c ?? "auto", parallel };
  }
  if (!isObject(c) || c.type !== "function" || !isObject(c.function) || typeof c.function.name !== "string") {
    throw bad("tool_choice", 'tool_choice must be "none", "auto", "required" or {"type": "function", "function": {"name": …}}.');
  }
  const name = c.function.name;
  if (!names.has(name)) throw bad("tool_choice", `tool_choice names ${name}, which is not in tools.`);
  return { tools, choice: { name }, parallel };
}

/** An assistant message's `tool_calls`, as the client got them from this server (or wrote them). */
export function toolCallsOf(v: unknown, i: number): TurnToolCall[] | undefined {
  if (v === undefined || v === null) return undefined;
  const param = `messages[${i}].tool_calls`;
  if (!Array.isArray(v)) throw bad(param, `${param} must be an array.`);
  return v.map((c: unknown, j): TurnToolCall => {
    const f = isObject(c) ? c.function : undefined;
    if (!isObject(c) || typeof c.id !== "string" || !isObject(f) || typeof f.name !== "string" || typeof f.arguments !== "string") {
      throw bad(`${param}[${j}]`, `${param}[${j}] must be {"id", "type": "function", "function": {"name", "arguments"}} with arguments as JSON text.`);
    }
    return { id: c.id, name: f.name, arguments: f.arguments };
  });
}

/** What a `role: "tool"` message becomes before it is folded into the call it answers. */
export interface ToolResult {
  role: "tool";
  toolCallId: string;
  content: string;
  index: number;
}

export function toolResultOf(m: Body, content: string, i: number): ToolResult {
  if (typeof m.tool_call_id !== "string" || m.tool_call_id === "") throw bad(`messages[${i}].tool_call_id`, `messages[${i}] (role "tool") needs the tool_call_id of the call it answers.`);
  return { role: "tool", toolCallId: m.tool_call_id, content, index: i };
}

function unanswered(calls: TurnToolCall[] | undefined): void {
  const open = calls?.find((c) => c.result === undefined);
  if (open) throw bad("messages", `The tool call ${open.id} (${open.name}) has no role "tool" message with its result.`);
}

/**
 * The conversation with each tool message folded into the call it answers (the model's templates render
 * a call and its result together). A tool message must follow the assistant message that made its call;
 * every call must have its answer before the conversation goes on.
 */
export function foldToolResults<M extends { role: string; toolCalls?: TurnToolCall[] }>(messages: (M | ToolResult)[]): M[] {
  const out: M[] = [];
  let calls: TurnToolCall[] | undefined;
  for (const m of messages) {
    if (m.role === "tool") {
      const r = m as ToolResult;
      const call = calls?.find((c) => c.id === r.toolCallId);
      if (!call) throw bad(`messages[${r.index}].tool_call_id`, `messages[${r.index}] answers tool call ${r.toolCallId}, which the assistant message before it did not make.`);
      call.result = r.content;
      continue;
    }
    unanswered(calls);
    const message = m as M;
    calls = message.toolCalls?.map((c) => ({ ...c }));
    out.push(calls ? { ...message, toolCalls: calls } : message);
  }
  unanswered(calls);
  return out;
}

/**
 * A 400 before anything is generated when the request offers tools, or its conversation holds tool calls,
 * and the model cannot render them (its chat template has no syntax for them).
 */
export async function checkToolSupport(model: RuntimeModel, id: string, tools: ToolOptions | undefined, messages: readonly { toolCalls?: TurnToolCall[] }[]): Promise<void> {
  const history = messages.some((m) => m.toolCalls && m.toolCalls.length > 0);
  if ((!tools && !history) || (model.toolSyntax && (await model.toolSyntax()))) return;
  const what = tools ? "call tools" : "read the tool calls in messages";
  throw new HttpError(400, `${id} cannot ${what}: its chat template has no syntax for tool calls.${tools ? ' Send tool_choice "none", or use a model whose template has one (Llama 3.1+, Qwen2.5/3, Mistral…).' : ""}`, {
    param: tools ? "tools" : "messages",
    code: "tools_not_supported",
  });
}

/** OpenAI's `tool_calls`, with the ids a client sends back in `tool_call_id`: the same in deltas and in the message. */
export class ToolCallShaper {
  private readonly ids: string[] = [];

  private idOf(index: number): string {
    return (this.ids[index] ??= `call_${randomUUID().replaceAll("-", "").slice(0, 24)}`);
  }

  /** A stream delta's `tool_calls` entry: the first piece of a call carries its id, type and name. */
  delta(c: ToolCallChunk): Record<string, unknown> {
    const known = this.ids[c.index] !== undefined;
    const id = this.idOf(c.index);
    return known ? { index: c.index, function: { arguments: c.arguments } } : { index: c.index, id, type: "function", function: { name: c.name, arguments: c.arguments } };
  }

  /** A response message's `tool_calls`. */
  message(calls: readonly { name: string; arguments: string }[]): Record<string, unknown>[] {
    return calls.map((c, index) => ({ id: this.idOf(index), type: "function", function: { name: c.name, arguments: c.arguments } }));
  }
}
