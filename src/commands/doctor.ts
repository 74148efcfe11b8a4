import type { Command } from "commander";
import type { CheckStatus, DoctorCheck, DoctorReport } from "../backends/system/doctor.js";
import { colorEnabled } from "../ui/options.js";
import { action } from "./action.js";

export function register(program: Command): void {
  program
    .command("doctor")
    .description("Check this machine: Node, CPU, memory, GPU, disk space, paths, and what quantize/fine-tune still need")
    .addHelpText(
      "after",
      `
Marks: ✓ ok   ! worth knowing   ✗ missing or failed (with the command that fixes it).
doctor only reports: it exits 0 even when optional features are missing.
--json prints the full report object (every fact and every check) as the result line.`,
    )
    .action(
      action(async (ctx) => {
        const { runDoctor } = await import("../backends/system/doctor.js");
        const render = await ctx.renderer(false);
        const report = await runDoctor({ signal: ctx.signal, onEvent: render.onEvent });
        render.result(report, formatReport(report, colorEnabled(ctx.globals, process.stdout)));
      }),
    );
}

const MARK: Record<CheckStatus, string> = { ok: "✓", warn: "!", missing: "✗", error: "✗" };
const COLOR: Record<CheckStatus, string> = { ok: "32", warn: "33", missing: "31", error: "31" };

export function formatReport(report: DoctorReport, color: boolean): string {
  const paint = (code: string, s: string) => (color ? `\x1b[${code}m${s}\x1b[0m` : s);
  const sections: [string, DoctorCheck[]][] = [
    ["System", report.sections.system],
    ["GPU", report.sections.gpu],
    ["Storage", report.sections.storage],
    ["Features", report.sections.features],
  ];
  const all = sections.flatMap(([, checks]) => checks);
  const width = Math.max(...all.map((c) => c.name.length));
  const lines: string[] = [];
  for (const [title, checks] of sections) {
    if (lines.length) lines.push("");
    lines.push(paint("1", title));
    for (const c of checks) lines.push(`  ${paint(COLOR[c.status], MARK[c.status])} ${c.name.padEnd(width)}  ${c.detail}`);
  }

  // One line per distinct fix, naming what it fixes, instead of repeating it under every check.
  const fixes = new Map<string, string[]>();
  for (const c of all) if (c.fix && c.status !== "ok") fixes.set(c.fix, [...(fixes.get(c.fix) ?? []), c.name]);
  if (fixes.size) {
    lines.push("", paint("1", "To fix"));
    for (const [fix, names] of fixes) lines.push(`  ${paint("2", `${names.join(", ")}:`)}`, `    ${fix}`);
  }

  const count = (s: CheckStatus) => all.filter((c) => c.status === s).length;
  const problems = count("missing") + count("error");
  lines.push(
    "",
    `${all.length} checks: ${count("ok")} ok, ${count("warn")} to note, ${problems} missing or failed (${(report.durationMs / 1000).toFixed(1)} s)`,
  );
  return lines.join("\n");
}
