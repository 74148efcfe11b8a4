import type { ChatHistoryItem, ChatModelFunctionCall, ChatModelFunctions, ChatModelResponse, ChatWrapper, LlamaContextSequence } from "node-llama-cpp";
import { CancelledError, SlmError, UsageError } from "../../core/errors.js";
import type { ChatTurn, RuntimeGenerateOptions, ToolDefinition, ToolOptions } from "../runtime/types.js";
import type { GenerateResult } from "./generate.js";
import { samplingFor } from "./generate.js";
import type { LoadedModel } from "./loader.js";

/**
 * Tool calls through node-llama-cpp's function calling and the model's own chat template: node-llama-cpp
 * knows the call syntax of the templates it has a wrapper for (Llama 3.1+, Qwen, Mistral, Functionary…)
 * and reads it out of any other Jinja template that renders `tools`, `tool_calls` and `role: "tool"`
 * messages. Once the model writes the syntax's opening, node-llama-cpp constrains the function's name
 * and its arguments (the tool's JSON schema) with a grammar, and LlamaChat hands the calls back instead of
 * running them: the client runs them and sends the results as `role: "tool"` messages.
 */

/** A call whose syntax the model did not follow, or that was cut off: the server answers 500. */
export class ToolCallFormatError extends SlmError {}

/** Whether the wrapper has a call syntax of the model's own, rather than node-llama-cpp's generic fallback. */
export async function hasToolSyntax(wrapper: ChatWrapper): Promise<boolean> {
  const { ChatWrapper, JinjaTemplateChatWrapper } = await import("node-llama-cpp");
  if (wrapper instanceof JinjaTemplateChatWrapper) return wrapper.usingJinjaFunctionCallTemplate;
  return JSON.stringify(wrapper.settings.functions) !== JSON.stringify(ChatWrapper.defaultSettings.functions);
}

/** JSON text as its value, other text as it is (a tool's answer need not be JSON). */
function valueOf(text: string | undefined): unknown {
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

/** node-llama-cpp's chat history from runtime-neutral turns, an assistant's tool calls with their results included. */
export function chatHistoryOf(turns: readonly ChatTurn[]): ChatHistoryItem[] {
  return turns.map((m): ChatHistoryItem => {
    if (m.role !== "assistant") return { type: m.role, text: m.content };
    if (!m.toolCalls || m.toolCalls.length === 0) return { type: "model", response: [m.content] };
    const response: ChatModelResponse["response"] = m.content ? [m.content] : [];
    m.toolCalls.forEach((c, i) => {
      const call: ChatModelFunctionCall = { type: "functionCall", name: c.name, params: valueOf(c.arguments), result: valueOf(c.result), startsNewChunk: i === 0 };
      response.push(call);
    });
    return { type: "model", response };
  });
}

/** The functions node-llama-cpp may let the model call: the tools, or only the one `tool_choice` names. */
export function functionsOf(o: ToolOptions): ChatModelFunctions {
  const picked = typeof o.choice === "object" ? o.tools.filter((t) => t.name === (o.choice as { name: string }).name) : o.tools;
  return Object.fromEntries(picked.map((t: ToolDefinition) => [t.name, { description: t.description, params: t.parameters as ChatModelFunctions[string]["params"] }]));
}

/**
 * The wrapper with the answer opened by a call: node-llama-cpp's `noPrefixTrigger` puts the call syntax's
 * opening after the prompt and starts in its function-name grammar, so the model must call one of the
 * functions (`tool_choice` "required" or a named function).
 */
async function callingWrapper(wrapper: ChatWrapper): Promise<ChatWrapper> {
  const { LlamaText } = await import("node-llama-cpp");
  const forced = Object.create(wrapper) as ChatWrapper;
  forced.generateContextState = (o) => {
    const state = wrapper.generateContextState(o);
    if (!o.availableFunctions || Object.keys(o.availableFunctions).length === 0) return state;
    return { contextText: state.contextText, stopGenerationTriggers: state.stopGenerationTriggers, noPrefixTrigger: { type: "functionCall", inject: LlamaText() } };
  };
  return forced;
}

/**
 * The opening of the template's call syntax (`<tool_call>`, `<function=`, `[TOOL_CALLS]`): found in an
 * answer's text, it means the model began a call that did not follow the syntax (node-llama-cpp only
 * takes the exact one).
 */
export function callOpening(prefix: string): string | undefined {
  const opening = prefix.trimStart().split(/[\s{"(]/)[0] ?? "";
  return opening.length >= 3 ? opening : undefined;
}

/** The conversation's history for LlamaChat, ending with the model's (new or continued) answer. */
function historyFor(messages: readonly ChatTurn[]): ChatHistoryItem[] {
  const history = chatHistoryOf(messages);
  const last = messages[messages.length - 1];
  if (last?.role === "user") history.push({ type: "model", response: [] });
  else if (!last?.toolCalls?.every((c) => c.result !== undefined)) throw new UsageError("A conversation to answer must end with a user message or the results of the assistant's tool calls.");
  return history;
}

/** The prompt's tokens as the model evaluates them with these tools (for counting and the context check). */
export async function toolPromptTokens(loaded: LoadedModel, messages: readonly ChatTurn[], tools: readonly ToolDefinition[] | undefined): Promise<number[]> {
  const wrapper = await loaded.chatWrapper();
  const functions = tools && tools.length > 0 ? functionsOf({ tools: [...tools], choice: "auto", parallel: true }) : undefined;
  const { contextText } = wrapper.generateContextState({ chatHistory: historyFor(messages), availableFunctions: functions });
  return contextText.tokenize(loaded.model.tokenizer);
}

/** One chat answer that may call tools, or that continues after their results. */
export async function generateWithTools(loaded: LoadedModel, sequence: LlamaContextSequence, o: RuntimeGenerateOptions): Promise<GenerateResult> {
  const { LlamaChat } = await import("node-llama-cpp");
  if (!o.messages) throw new UsageError("Tool calls need a chat conversation.");
  const base = await loaded.chatWrapper();
  if (o.tools && !(await hasToolSyntax(base))) throw new UsageError(`${loaded.entry.name}'s chat template has no syntax for tool calls.`);
  if (o.jsonSchema && o.tools) throw new UsageError("A JSON schema and tools cannot be used together.");
  const functions = o.tools ? functionsOf(o.tools) : undefined;
  const forced = o.tools !== undefined && o.tools.choice !== "auto";
  const wrapper = forced ? await callingWrapper(base) : base;
  const history = historyFor(o.messages);
  const promptTokens = wrapper.generateContextState({ chatHistory: history, availableFunctions: functions }).contextText.tokenize(loaded.model.tokenizer).length;

  const started = performance.now();
  let firstAt: number | undefined;
  const first = () => (firstAt ??= performance.now());
  // Each call's arguments as the model wrote them (the grammar keeps them valid JSON for the schema), less the
  // whitespace the grammar lets it write after them: held back until more text follows.
  const args: { name: string; text: string; held: string }[] = [];
  const outputBefore = sequence.tokenMeter.usedOutputTokens;
  const chat = new LlamaChat({ contextSequence: sequence, chatWrapper: wrapper, autoDisposeSequence: false });
  let r;
  try {
    r = await chat.generateResponse(history, {
      ...samplingFor(o, loaded.context.contextSize),
      functions,
      maxParallelFunctionCalls: o.tools?.parallel === false ? 1 : undefined,
      onTextChunk: (t) => {
        first();
        o.onText?.(t);
      },
      onFunctionCallParamsChunk: (c) => {
        first();
        const call = (args[c.callIndex] ??= { name: c.functionName, text: "", held: "" });
        const text = call.held + c.paramsChunk;
        const body = text.trimEnd();
        call.held = text.slice(body.length);
        if (body === "") return;
        call.text += body;
        o.onToolCall?.({ index: c.callIndex, name: c.functionName, arguments: body });
      },
      signal: o.signal,
      stopOnAbortSignal: true,
    });
  } catch (err) {
    if (o.signal?.aborted) throw new CancelledError();
    // node-llama-cpp checks a call's arguments against the tool's schema once they are written.
    if (args.length > 0) {
      const name = args[args.length - 1]!.name;
      // Arguments that never end (whitespace the grammar allows) run into the end of the context.
      if (sequence.nextTokenIndex >= loaded.context.contextSize - 1) throw new ToolCallFormatError(`The model's call of ${name} did not end before the context (${loaded.context.contextSize} tokens) was full.`);
      throw new ToolCallFormatError(`The model's call of ${name} is not valid: ${(err as Error).message}.`);
    }
    throw err;
  } finally {
    chat.dispose({ disposeSequence: false });
  }
  const calls = (r.functionCalls ?? []).map((c, i) => ({ name: c.functionName, arguments: args[i]?.text || JSON.stringify(c.params ?? {}) }));
  const stopReason = r.metadata.stopReason;
  const completionTokens = sequence.tokenMeter.usedOutputTokens - outputBefore;
  if (functions) {
    // The answer stopped inside a call: arguments begun and not ended, a forced call that never finished, or
    // tokens spent on a call's opening or name (they never reach the text) without one.
    const unfinished = args.length > calls.length || (calls.length === 0 && (forced || (stopReason === "maxTokens" && r.response === "" && completionTokens > 0)));
    if (unfinished) throw new ToolCallFormatError(`The model's tool call was cut off (${stopReason === "maxTokens" ? "max_tokens reached: raise it" : stopReason}).`);
    const opening = callOpening(String((await import("node-llama-cpp")).LlamaText(base.settings.functions.call.prefix)));
    if (opening && r.response.includes(opening)) throw new ToolCallFormatError(`The model began a tool call that does not follow its chat template's syntax: ${JSON.stringify(r.response.slice(r.response.indexOf(opening), r.response.indexOf(opening) + 120))}`);
  }
  // A function without parameters is called with no arguments to stream: its call is streamed whole here.
  calls.forEach((c, index) => args[index] === undefined && o.onToolCall?.({ index, ...c }));
  const ended = performance.now();
  const genMs = firstAt !== undefined ? ended - firstAt : 0;
  return {
    text: r.response,
    stopReason: calls.length > 0 ? "toolCalls" : stopReason,
    promptTokens,
    completionTokens,
    toolCalls: calls.length > 0 ? calls : undefined,
    timings: {
      loadMs: loaded.loadMs,
      firstTokenMs: Math.round((firstAt ?? ended) - started),
      totalMs: Math.round(ended - started),
      tokensPerSecond: genMs > 0 && completionTokens > 1 ? ((completionTokens - 1) * 1000) / genMs : 0,
    },
  };
}
