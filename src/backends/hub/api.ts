import { listFiles, modelInfo } from "@huggingface/hub";
import { suggestNames } from "../../core/catalog.js";
import { CancelledError, NetworkError, SlmError, UsageError, isAbort } from "../../core/errors.js";
import { connectionError, hubHttpError } from "./errors.js";
import { backoff, sleep } from "./retry.js";

export interface RepoFile {
  path: string;
  size: number;
  /** Git blob sha1: the cache's blob name for non-LFS files, and their checksum. */
  gitOid: string;
  /** LFS sha256: the blob name and checksum of LFS files. */
  sha256?: string;
}

export interface RepoSnapshot {
  repo: string;
  revision: string;
  commit: string;
  files: RepoFile[];
}

export interface HubAccess {
  endpoint: string;
  token?: string;
  signal?: AbortSignal;
}

/**
 * A fetch for @huggingface/hub that retries 5xx answers and dropped connections with backoff, since the
 * library itself gives up on the first failure.
 */
function retryingFetch(signal?: AbortSignal, attempts = 4): typeof fetch {
  return async (input, init) => {
    for (let attempt = 0; ; attempt++) {
      try {
        const res = await fetch(input, { ...init, signal });
        if (res.status < 500 || attempt >= attempts) return res;
      } catch (err) {
        if (isAbort(err) || signal?.aborted || attempt >= attempts) throw err;
      }
      await sleep(backoff(attempt), signal);
    }
  };
}

function asHubError(err: unknown, access: HubAccess, repo: string, what: string): SlmError {
  if (err instanceof SlmError) return err;
  if (isAbort(err) || access.signal?.aborted) return new CancelledError();
  const status = (err as { statusCode?: number }).statusCode;
  if (typeof status === "number") {
    const data = (err as { data?: { error?: string } }).data;
    // The library drops the X-Error-Code header; the Hub's message for a bad revision is "Invalid rev id: X".
    const errorCode = /invalid rev|revision/i.test(data?.error ?? "") ? "RevisionNotFound" : null;
    return hubHttpError(status, what, { repo, errorCode, hasToken: !!access.token, suggestions: suggestNames(repo.split("/")[1] ?? repo) });
  }
  if (err instanceof TypeError || err instanceof Error) return connectionError(access.endpoint, err);
  return new NetworkError(String(err));
}

/** The commit a revision points at and the repository's file list at that commit (with LFS sha256). */
export async function fetchRepoSnapshot(repo: string, revision: string, access: HubAccess): Promise<RepoSnapshot> {
  if (access.token && !access.token.startsWith("hf_")) {
    // @huggingface/hub refuses such tokens with a bare TypeError before any request; say why instead.
    throw new UsageError("HF_TOKEN does not look like a Hugging Face token (they start with hf_).", { hint: "Create a read token in your Hub settings and set HF_TOKEN to it." });
  }
  const common = { hubUrl: access.endpoint, accessToken: access.token, fetch: retryingFetch(access.signal) };
  let commit: string;
  try {
    const info = await modelInfo({ ...common, name: repo, revision, additionalFields: ["sha"] });
    commit = (info as { sha?: string }).sha ?? "";
  } catch (err) {
    throw asHubError(err, access, repo, `revision ${revision}`);
  }
  if (!/^[0-9a-f]{40}$/.test(commit)) throw new NetworkError(`The Hub gave no commit for ${repo}@${revision}.`);
  const files: RepoFile[] = [];
  try {
    for await (const entry of listFiles({ ...common, repo: { type: "model", name: repo }, revision: commit, recursive: true })) {
      if (entry.type !== "file") continue;
      files.push({ path: entry.path, size: entry.size, gitOid: entry.oid ?? "", sha256: entry.lfs?.oid });
    }
  } catch (err) {
    throw asHubError(err, access, repo, `the file list of ${commit}`);
  }
  return { repo, revision, commit, files };
}
