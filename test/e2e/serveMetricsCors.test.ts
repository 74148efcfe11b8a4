import { execa, type ResultPromise } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BIN, sandbox, slm } from "../helpers/cli.js";
import { listening } from "../helpers/serveProcess.js";

const KEY = "sk-test-metrics-51c2";
const APP = "http://app.example:5173";
const OTHER = "http://other.example";
const auth = { Authorization: `Bearer ${KEY}` };

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/**
 * A strict reader of Prometheus's text exposition format (0.0.4): every line is a HELP or TYPE comment or
 * a sample of a family whose TYPE came first; names, labels and values must be well formed; a series
 * appears once; histogram buckets are cumulative and end with +Inf equal to _count. Throws otherwise.
 */
function parseExposition(text: string): Sample[] {
  expect(text.endsWith("\n")).toBe(true);
  const types = new Map<string, string>();
  const seen = new Set<string>();
  const samples: Sample[] = [];
  const NAME = "[a-zA-Z_:][a-zA-Z0-9_:]*";
  for (const line of text.slice(0, -1).split("\n")) {
    const comment = new RegExp(`^# (HELP|TYPE) (${NAME}) (.*)$`).exec(line);
    if (comment) {
      if (comment[1] === "TYPE") {
        if (!["counter", "gauge", "histogram", "summary", "untyped"].includes(comment[3]!)) throw new Error(`bad type: ${line}`);
        if (types.has(comment[2]!)) throw new Error(`TYPE twice: ${line}`);
        types.set(comment[2]!, comment[3]!);
      }
      continue;
    }
    const m = new RegExp(`^(${NAME})(?:\\{(.*)\\})? (\\S+)$`).exec(line);
    if (!m) throw new Error(`not a sample: ${JSON.stringify(line)}`);
    const [, name, labelText, valueText] = m as unknown as [string, string, string | undefined, string];
    const labels: Record<string, string> = {};
    if (labelText) {
      const rest = labelText.replace(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\["\\n])*)"(,|$)/g, (_all, k: string, v: string) => {
        if (k in labels) throw new Error(`label twice: ${line}`);
        labels[k] = v.replace(/\\(["\\n])/g, (_x, c: string) => (c === "n" ? "\n" : c));
        return "";
      });
      if (rest !== "") throw new Error(`bad labels: ${line}`);
    }
    const value = valueText === "+Inf" ? Infinity : valueText === "-Inf" ? -Infinity : Number(valueText);
    if (valueText !== "NaN" && Number.isNaN(value)) throw new Error(`bad value: ${line}`);
    const family = types.has(name) ? name : name.replace(/_(bucket|sum|count)$/, "");
    if (!types.has(family)) throw new Error(`sample before its TYPE: ${line}`);
    if (types.get(family) !== "histogram" && family !== name) throw new Error(`suffix on a ${types.get(family)}: ${line}`);
    const series = `${name}${JSON.stringify(Object.entries(labels).sort())}`;
    if (seen.has(series)) throw new Error(`series twice: ${line}`);
    seen.add(series);
    samples.push({ name, labels, value });
  }
  for (const [family, type] of types) {
    if (type !== "histogram") continue;
    const counts = samples.filter((s) => s.name === `${family}_count`);
    for (const c of counts) {
      const same = (s: Sample) => Object.entries(c.labels).every(([k, v]) => s.labels[k] === v);
      const buckets = samples.filter((s) => s.name === `${family}_bucket` && same(s));
      for (let i = 1; i < buckets.length; i++) if (buckets[i]!.value < buckets[i - 1]!.value || Number(buckets[i]!.labels.le) <= Number(buckets[i - 1]!.labels.le)) throw new Error(`${family}: buckets not cumulative`);
      if (buckets.at(-1)?.labels.le !== "+Inf" || buckets.at(-1)!.value !== c.value) throw new Error(`${family}: +Inf bucket ≠ _count`);
    }
  }
  return samples;
}

/** A sample's value (0 when the series is not there yet: counters start at zero). */
function value(samples: Sample[], name: string, labels: Record<string, string> = {}): number {
  return samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value ?? 0;
}

async function scrape(url: string): Promise<Sample[]> {
  const r = await fetch(`${url}/metrics`, { headers: auth });
  expect(r.status).toBe(200);
  expect(r.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
  return parseExposition(await r.text());
}

interface Running {
  url: string;
  proc: ResultPromise<{ reject: false }>;
}

async function serve(args: string[], env: Record<string, string>): Promise<Running> {
  const proc = execa("node", [BIN, "serve", "--port", "0", "--threads", "1", ...args], { env, extendEnv: true, reject: false });
  return { url: (await listening(proc, 60_000)).url, proc };
}

const chat = (url: string, extra: object, headers: Record<string, string> = {}) =>
  fetch(`${url}/v1/chat/completions`, { method: "POST", headers: { "Content-Type": "application/json", ...auth, ...headers }, body: JSON.stringify({ model: "tiny-arith", messages: [{ role: "user", content: "12+34" }], temperature: 0, ...extra }) });

describe("slm serve --metrics --cors", () => {
  const sb = sandbox();
  let main: Running;
  /** Neither flag: no /metrics, no CORS headers. */
  let plain: Running;

  beforeAll(async () => {
    [main, plain] = await Promise.all([
      serve(["tiny-arith", "--metrics", "--cors", `${APP},http://b.example`, "--cors", "http://c.example"], { ...sb.env, SLM_API_KEY: KEY }),
      serve([], { ...sb.env, SLM_API_KEY: KEY }),
    ]);
  }, 90_000);

  afterAll(async () => {
    for (const s of [main, plain]) {
      s?.proc.kill("SIGINT");
      await s?.proc;
    }
  });

  it("reads exposition text strictly (the reader the checks below rely on)", () => {
    const ok = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\",y=\"q\\\"\"} 3\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3.5\nh_count 2\n";
    expect(parseExposition(ok).map((x) => [x.name, x.value])).toEqual([["a_total", 3], ["h_bucket", 1], ["h_bucket", 2], ["h_sum", 3.5], ["h_count", 2]]);
    for (const bad of ["a 1\n", "# TYPE a counter\na{x=1} 1\n", "# TYPE a counter\na 1\na 2\n", "# TYPE a counter\na one\n", "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n", "# TYPE a counter\na 1"]) {
      expect(() => parseExposition(bad), bad).toThrow();
    }
  });

  it("serves /metrics only behind the key, and only with --metrics", async () => {
    expect((await fetch(`${main.url}/metrics`)).status).toBe(401);
    expect((await fetch(`${main.url}/metrics`, { headers: { Authorization: "Bearer wrong" } })).status).toBe(401);
    expect((await fetch(`${plain.url}/metrics`, { headers: auth })).status).toBe(404);
  });

  it("counts requests by endpoint and status, tokens, and the latency histograms as requests are served", async () => {
    const before = await scrape(main.url);
    expect(value(before, "slm_models_loaded")).toBe(1);
    expect(before.some((s) => s.name === "slm_queue_depth" && s.labels.model === "tiny-arith" && s.value === 0)).toBe(true);
    expect(before.some((s) => s.name === "slm_busy_sequences" && s.labels.model === "tiny-arith")).toBe(true);

    const plainAnswer = (await (await chat(main.url, {})).json()) as { usage: { prompt_tokens: number; completion_tokens: number } };
    const streamed = await chat(main.url, { stream: true, stream_options: { include_usage: true } });
    const events = (await streamed.text()).split("\n\n").filter((e) => e.startsWith("data: {"));
    const streamUsage = (JSON.parse(events.at(-1)!.slice(6)) as { usage: { prompt_tokens: number; completion_tokens: number } }).usage;
    expect((await chat(main.url, { temperature: -1 })).status).toBe(400);
    expect((await chat(main.url, {}, { Authorization: "Bearer wrong" })).status).toBe(401);

    const after = await scrape(main.url);
    const delta = (name: string, labels: Record<string, string> = {}) => value(after, name, labels) - value(before, name, labels);
    const ep = "/v1/chat/completions";
    expect(delta("slm_requests_total", { endpoint: ep, status: "200" })).toBe(2);
    expect(delta("slm_requests_total", { endpoint: ep, status: "400" })).toBe(1);
    expect(delta("slm_requests_total", { endpoint: ep, status: "401" })).toBe(1);
    // The scrape before this one was counted too.
    expect(delta("slm_requests_total", { endpoint: "/metrics", status: "200" })).toBe(1);
    const model = { model: "tiny-arith" };
    expect(delta("slm_prompt_tokens_total", model)).toBe(plainAnswer.usage.prompt_tokens + streamUsage.prompt_tokens);
    const completion = plainAnswer.usage.completion_tokens + streamUsage.completion_tokens;
    expect(completion).toBeGreaterThan(2);
    expect(delta("slm_completion_tokens_total", model)).toBe(completion);
    expect(delta("slm_time_to_first_token_seconds_count", model)).toBe(2);
    expect(delta("slm_time_to_first_token_seconds_sum", model)).toBeGreaterThan(0);
    expect(delta("slm_time_per_output_token_seconds_count", model)).toBe(completion - 2);
    expect(value(after, "slm_busy_sequences", model)).toBe(0);
  });

  it("answers a CORS preflight for an allowed origin, and not for others", async () => {
    const preflight = (url: string, origin: string) =>
      fetch(`${url}/v1/chat/completions`, { method: "OPTIONS", headers: { Origin: origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type" } });
    for (const origin of [APP, "http://c.example"]) {
      const r = await preflight(main.url, origin);
      expect(r.status).toBe(204);
      expect(r.headers.get("access-control-allow-origin")).toBe(origin);
      expect(r.headers.get("access-control-allow-methods")).toMatch(/\bPOST\b/);
      const allowed = (r.headers.get("access-control-allow-headers") ?? "").toLowerCase().split(/,\s*/);
      expect(allowed).toEqual(expect.arrayContaining(["authorization", "content-type"]));
      expect(Number(r.headers.get("access-control-max-age"))).toBeGreaterThan(0);
    }
    // The official openai client's own headers (a browser asks for them all in one preflight).
    const stainless = "authorization,content-type,x-stainless-arch,x-stainless-lang,x-stainless-os,x-stainless-package-version,x-stainless-retry-count,x-stainless-runtime,x-stainless-runtime-version,x-stainless-timeout";
    const client = await fetch(`${main.url}/v1/chat/completions`, { method: "OPTIONS", headers: { Origin: APP, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": stainless } });
    const granted = (client.headers.get("access-control-allow-headers") ?? "").toLowerCase().split(/,\s*/);
    expect(granted).toEqual(expect.arrayContaining(stainless.split(",")));
    // Preflights count under the route they ask about.
    const preflights = (await scrape(main.url)).find((s) => s.name === "slm_requests_total" && s.labels.endpoint === "/v1/chat/completions" && s.labels.status === "204");
    expect(preflights?.value).toBeGreaterThanOrEqual(3);
    const refused = await preflight(main.url, OTHER);
    expect(refused.headers.get("access-control-allow-origin")).toBeNull();
    expect(refused.headers.get("access-control-allow-methods")).toBeNull();
    // Without --cors, nothing changes: OPTIONS is not a method the routes take.
    const off = await preflight(plain.url, APP);
    expect(off.status).toBe(405);
    expect(off.headers.get("access-control-allow-origin")).toBeNull();
  });

  it("puts the header on JSON, event-stream and error answers for an allowed origin only", async () => {
    const json = await chat(main.url, {}, { Origin: APP });
    expect(json.status).toBe(200);
    expect(json.headers.get("access-control-allow-origin")).toBe(APP);
    expect(json.headers.get("vary")).toMatch(/Origin/);
    await json.arrayBuffer();
    const sse = await chat(main.url, { stream: true }, { Origin: APP });
    expect(sse.headers.get("content-type")).toMatch(/^text\/event-stream/);
    expect(sse.headers.get("access-control-allow-origin")).toBe(APP);
    await sse.text();
    const error = await chat(main.url, {}, { Origin: APP, Authorization: "Bearer wrong" });
    expect(error.status).toBe(401);
    expect(error.headers.get("access-control-allow-origin")).toBe(APP);
    const other = await chat(main.url, {}, { Origin: OTHER });
    expect(other.status).toBe(200);
    expect(other.headers.get("access-control-allow-origin")).toBeNull();
    await other.arrayBuffer();
    const off = await fetch(`${plain.url}/v1/models`, { headers: { ...auth, Origin: APP } });
    expect(off.headers.get("access-control-allow-origin")).toBeNull();
  });

  it("refuses a --cors value that is not an origin", async () => {
    const r = await slm(["serve", "--port", "0", "--cors", "http://app.example/chat"], sb);
    expect(r.exitCode).toBe(2);
    expect(r.all).toMatch(/--cors http:\/\/app\.example\/chat: not an origin .*\n.*Did you mean --cors http:\/\/app\.example\?/);
  });
});
