import { describe, expect, it } from "vitest";
import { NotFoundError, SlmError } from "../../src/core/errors.js";
import { toHttpError, withoutPaths } from "../../src/backends/serve/httpError.js";

describe("serve: error messages for clients carry no filesystem paths", () => {
  it("cuts absolute paths to their last part and leaves URLs, routes' text and repo ids alone", () => {
    expect(withoutPaths("The file of x is missing: /root/.slm/models/a.gguf")).toBe("The file of x is missing: a.gguf");
    expect(withoutPaths("Could not load (/srv/m/b.gguf) now")).toBe("Could not load (b.gguf) now");
    expect(withoutPaths("open '/tmp/q/c.gguf' failed")).toBe("open 'c.gguf' failed");
    expect(withoutPaths("~/models/d.gguf is broken")).toBe("d.gguf is broken");
    for (const kept of ["see http://127.0.0.1:8080/v1/models", "pull org/repo-GGUF first", "1/2 done", "a.gguf"]) expect(withoutPaths(kept)).toBe(kept);
  });

  it("applies to slm's own errors and unexpected ones alike", () => {
    expect(toHttpError(new NotFoundError("The file of m is missing: /home/u/.slm/x/m.gguf")).message).toBe("The file of m is missing: m.gguf");
    expect(toHttpError(new SlmError("Could not load m: failed to open /data/secret/m.gguf")).message).not.toContain("/data");
    expect(toHttpError(new Error("ENOENT: no such file or directory, stat '/etc/shadow'")).message).toBe("Internal error: ENOENT: no such file or directory, stat 'shadow'");
  });
});
