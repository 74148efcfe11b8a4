/**
 * What pip (or uv) is doing, read from its output lines, for the live view of `slm setup python`:
 * the package being collected, the file being downloaded and its size, its bytes as they come (pip's
 * `--progress-bar raw`, pip 24.1 and newer: "Progress 123 of 456" on stdout), and the install itself.
 */
export interface InstallUpdate {
  /** "collecting torch", "downloading torch-2.13.0+cpu-cp311-…whl (190 MB)", "installing 23 packages" */
  detail: string;
  /** Packages collected so far. */
  packages: number;
  /** Bytes of the current download, where the installer reports them. */
  bytes?: { current: number; total: number };
}

const UNITS: Record<string, number> = { bytes: 1, b: 1, kb: 1e3, mb: 1e6, gb: 1e9, kib: 1024, mib: 1024 ** 2, gib: 1024 ** 3 };

/** pip's and uv's sizes ("190.5 MB", "712 kB", "12.3MiB") in bytes. */
export function parseSize(text: string): number | undefined {
  const m = /^([\d.]+)\s*([a-z]+)$/i.exec(text.trim());
  const unit = m ? UNITS[m[2]!.toLowerCase()] : undefined;
  return m && unit ? Math.round(Number(m[1]) * unit) : undefined;
}

/** A requirement's project name: "torch==2.13.0 (from -r …)" → "torch". */
const projectName = (spec: string) => spec.split(/[<>=!~;[\s(@]/)[0]!;

/** The file name of what pip shows for a download (older pips show the whole URL). */
const fileName = (shown: string) => shown.split(/[?#]/)[0]!.split("/").pop()!;

/** A reader of one installer run's lines; returns an update when a line says something new. */
export function installProgress(): (line: string) => InstallUpdate | undefined {
  let packages = 0;
  let download: { file: string; total?: number } | undefined;
  return (raw) => {
    const line = raw.trim();
    let m: RegExpExecArray | null;
    if ((m = /^Progress (\d+) of (\d+)$/.exec(line))) {
      const current = Number(m[1]);
      const total = Number(m[2]) || download?.total;
      if (!download || !total) return undefined;
      return { detail: `downloading ${download.file}`, packages, bytes: { current, total } };
    }
    if ((m = /^Collecting (\S+)/.exec(line))) {
      packages++;
      download = undefined;
      return { detail: `collecting ${projectName(m[1]!)}`, packages };
    }
    // pip: "Downloading torch-2.13.0+cpu-….whl (190.5 MB)"; uv: "Downloading torch (190.5MiB)"
    if ((m = /^(Downloading|Using cached) (\S+)(?: \(([^)]+)\))?/.exec(line))) {
      const size = m[3] ? parseSize(m[3].split("/").pop()!) : undefined;
      download = { file: fileName(m[2]!), total: size };
      const sized = m[3] ? ` (${m[3]})` : "";
      return { detail: `${m[1] === "Downloading" ? "downloading" : "using cached"} ${download.file}${sized}`, packages };
    }
    if ((m = /^Building wheels? for (\S+)/.exec(line))) return { detail: `building ${m[1]}`, packages };
    if ((m = /^Installing collected packages: (.+)$/.exec(line))) {
      const names = m[1]!.split(",").map((s) => s.trim()).filter(Boolean);
      download = undefined;
      return { detail: names.length === 1 ? `installing ${names[0]}` : `installing ${names.length} packages`, packages };
    }
    // uv: "Resolved 42 packages in 1.2s", "Prepared 42 packages in 3m", "Installed 42 packages in 2s"
    if ((m = /^(Resolved|Prepared|Installed|Uninstalled) (\d+) packages?/.exec(line))) {
      packages = Math.max(packages, Number(m[2]));
      return { detail: `${m[1]!.toLowerCase()} ${m[2]} package${m[2] === "1" ? "" : "s"}`, packages };
    }
    return undefined;
  };
}

/** Whether `pip --version` output names a pip that has `--progress-bar raw` (24.1 and newer). */
export function pipHasRawProgress(versionOutput: string): boolean {
  const m = /^pip (\d+)\.(\d+)/.exec(versionOutput.trim());
  if (!m) return false;
  const [major, minor] = [Number(m[1]), Number(m[2])];
  return major > 24 || (major === 24 && minor >= 1);
}
