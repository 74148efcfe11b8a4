import { describe, expect, it } from "vitest";
import { nativeAddonCheck } from "../../src/backends/system/doctor.js";

/** doctor's line about slm's log-probability addon, for each state it can be in. */
describe("doctor: logprob addon", () => {
  const lib = "/x/bins/linux-x64/libllama.v0.4.0.so";

  it("is ok when built for the loaded libllama, naming both", () => {
    const c = nativeAddonCheck({ libllama: lib, file: "/h/native/abc/slm_logits.node", missing: "", off: false });
    expect(c.status).toBe("ok");
    expect(c.detail).toContain(lib);
    expect(c.detail).toContain("/h/native/abc/slm_logits.node");
  });

  it("is ok but not built yet when a compiler and git are there", () => {
    expect(nativeAddonCheck({ libllama: lib, missing: "", off: false })).toMatchObject({ status: "ok", detail: expect.stringMatching(/built on first use/) });
  });

  it("is a note with the fix when building it needs what is missing, and says what then happens", () => {
    const c = nativeAddonCheck({ libllama: lib, missing: "a C++ compiler (c++, g++ or clang++)", off: false });
    expect(c.status).toBe("warn");
    expect(c.detail).toMatch(/needs a C\+\+ compiler.*slow exact path/);
    expect(c.fix).toMatch(/install a C\+\+ compiler/);
  });

  it("is a note when SLM_NATIVE_LOGITS turns it off, even when built", () => {
    expect(nativeAddonCheck({ libllama: lib, file: "/f", missing: "", off: true })).toMatchObject({ status: "warn", detail: expect.stringMatching(/SLM_NATIVE_LOGITS/) });
  });
});
