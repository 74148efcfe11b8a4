/**
 * general.name and the naming keys llama.cpp's converter derives from a model's folder name
 * (gguf-py's Metadata.get_model_id_components and id_to_title), so an adapter converted here is
 * named as the script would name it: "lora-sub" → "Lora Sub". The model card (README.md) is not read.
 */

export interface NameParts {
  name: string;
  organization?: string;
  basename?: string;
  finetune?: string;
  version?: string;
  sizeLabel?: string;
}

const isLower = (w: string) => /\p{Ll}/u.test(w) && !/[\p{Lu}\p{Lt}]/u.test(w);
/** Python's str.title() for an all-lowercase word: capitalise each letter that follows a non-letter. */
const title = (w: string) => w.replace(/(^|[^\p{L}])(\p{Ll})/gu, (_, before: string, c: string) => before + c.toUpperCase());

export function idToTitle(s: string): string {
  return s
    .trim()
    .replaceAll("-", " ")
    .split(/\s+/)
    .filter(Boolean)
    .map((w) => (isLower(w) && !/^(v\d+(?:\.\d+)*|\d.*)$/.test(w) ? title(w) : w))
    .join(" ");
}

type Tag = "basename" | "size_label" | "finetune" | "version" | "type";

const SIZE = /^(([A]|\d+[x])?\d+([._]\d+)?[KMBT][\d]?|small|mini|medium|large|x?xl)$/i;
const isDigit = (c: string | undefined) => c !== undefined && c >= "0" && c <= "9";

/** Annotates one dash-separated part of a name, as get_model_id_components does; returns the part as rewritten. */
function annotate(part: string, i: number, tags: Set<Tag>, totalParams: number): string {
  if (/^(v|iter)?\d+([.]\d+)*$/i.test(part)) {
    tags.add("version");
    return part;
  }
  if (/^(i?q\d(_\w)*|b?fp?(16|32))$/i.test(part)) {
    tags.add("type");
    return part.toUpperCase();
  }
  if (i > 0 && SIZE.test(part)) {
    let p = part.replaceAll("_", ".");
    if (isDigit(p.at(-1))) p = p.slice(0, -2) + "." + p.at(-1)! + p.at(-2)!; // bloom-7b1 → 7.1b
    if (p.length > 1 && isDigit(p.at(-2)) && "kmbt".includes(p.at(-1)!)) p = p.slice(0, -1) + p.at(-1)!.toUpperCase();
    if (totalParams !== 0) {
      const label = Number(p.slice(0, -1)) * 1000 ** " KMBT".indexOf(p.at(-1)!);
      if (!Number.isNaN(label) && ((totalParams < 0 && label < Math.floor(Math.abs(totalParams) / 8)) || (totalParams > 0 && Math.abs(label - totalParams) > Math.floor((7 * totalParams) / 8)))) {
        tags.add("finetune"); // likely a context length
        p = p.slice(0, -1) + p.at(-1)!.toLowerCase();
      }
    }
    if (tags.size === 0) tags.add("size_label");
    return p;
  }
  if (i > 0 && /^(chat|instruct|vision|lora)$/i.test(part)) tags.add(totalParams < 0 && part.toLowerCase() === "lora" ? "type" : "finetune");
  return part;
}

/** `totalParams` is negative for adapters (gguf-py marks LoRA sizes as inexact that way). */
export function modelIdComponents(modelId: string, totalParams: number): NameParts {
  if (modelId.includes(" ")) return { name: idToTitle(modelId) };
  const slash = modelId.indexOf("/");
  let org = slash >= 0 ? modelId.slice(0, slash) : undefined;
  const full = slash >= 0 ? modelId.slice(slash + 1) : modelId;
  if (org?.startsWith(".")) org = undefined;
  const parts = full.split("-").filter((p) => p.length > 0);
  const tags = parts.map(() => new Set<Tag>());
  for (let i = 0; i < parts.length; i++) parts[i] = annotate(parts[i]!, i, tags[i]!, totalParams);
  // Word sizes (small, xl…) give way to a numeric one.
  if (parts.some((p, i) => tags[i]!.has("size_label") && /\d/.test(p))) {
    parts.forEach((p, i) => {
      if (tags[i]!.has("size_label") && /^\p{L}+$/u.test(p)) tags[i]!.delete("size_label");
    });
  }
  let atStart = true;
  parts.forEach((p, i) => {
    const t = tags[i]!;
    if (atStart && ((t.size === 0 && /^\p{L}/u.test(p)) || t.has("version"))) t.add("basename");
    else {
      atStart = false;
      if (t.size === 0) t.add("finetune");
    }
  });
  for (let i = parts.length - 1; i >= 0; i--) {
    const t = tags[i]!;
    if (t.has("basename") && t.size > 1) t.delete("basename");
    else break;
  }
  const pick = (tag: Tag, skipBasename = false) => parts.filter((_, i) => tags[i]!.has(tag) && !(skipBasename && tags[i]!.has("basename")));
  let basename = pick("basename").join("-") || undefined;
  const sizeLabel = [...new Set(pick("size_label"))].join("-") || undefined;
  const finetune = pick("finetune").join("-") || undefined;
  const version = pick("version", true).join("-") || undefined;
  if (sizeLabel === undefined && finetune === undefined && version === undefined) basename = undefined;
  return { name: idToTitle(full), organization: org ? idToTitle(org) : undefined, basename, finetune, version, sizeLabel };
}
