import { NetworkError, NotFoundError, SlmError } from "../../core/errors.js";

/** Turns an HTTP failure from the Hub into the error a user can act on. */
export function hubHttpError(status: number, what: string, opts: { repo: string; errorCode?: string | null; hasToken: boolean; suggestions?: string[] }): SlmError {
  if (status === 401 || status === 403) {
    return new NetworkError(`Access to ${opts.repo} was refused (HTTP ${status}): it is gated or private.`, {
      status,
      hint: opts.hasToken
        ? `Your HF_TOKEN was not accepted for this repository. Accept the model's licence on its Hub page (https://huggingface.co/${opts.repo}) with the account that owns the token, then retry.`
        : `Accept the model's licence on its Hub page (https://huggingface.co/${opts.repo}), create a read token in your Hub settings, and set it in HF_TOKEN.`,
    });
  }
  if (status === 404) {
    const code = opts.errorCode ?? "";
    const message =
      code === "RevisionNotFound" ? `Revision not found in ${opts.repo}: ${what}.`
      : code === "EntryNotFound" ? `File not found in ${opts.repo}: ${what}.`
      : `Repository not found on the Hub: ${opts.repo}.`;
    const hints = [
      opts.suggestions && opts.suggestions.length > 0 ? `Did you mean ${opts.suggestions.map((s) => `"${s}"`).join(" or ")}?` : "Check the spelling (names are org/name).",
      opts.hasToken ? "" : "A private repository also answers 404 without HF_TOKEN.",
    ].filter(Boolean);
    return new NotFoundError(message, { hint: hints.join(" ") });
  }
  return new NetworkError(`The Hub answered HTTP ${status} for ${what}.`, { status, hint: status >= 500 ? "The Hub is having trouble; retry in a moment." : undefined });
}

export function connectionError(endpoint: string, cause: unknown): NetworkError {
  const reason = cause instanceof Error ? ((cause.cause as Error | undefined)?.message ?? cause.message) : String(cause);
  return new NetworkError(`Could not reach ${endpoint} (${reason}).`, {
    cause,
    hint: "Check your connection (or HF_ENDPOINT). Set HF_HUB_OFFLINE=1 to use only what is already downloaded.",
  });
}
