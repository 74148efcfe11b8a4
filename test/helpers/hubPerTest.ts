import { afterEach } from "vitest";
import { type HubServer, type HubServerOptions, startHubServer } from "./hubServer.js";

/**
 * A starter for local Hub servers that closes every server it started after each test. Kept apart from
 * hubServer.ts, which bench/ also imports outside vitest.
 */
export function hubPerTest(defaults: Partial<HubServerOptions> = {}): (opts?: Partial<HubServerOptions>) => Promise<HubServer> {
  const servers: HubServer[] = [];
  afterEach(async () => {
    await Promise.all(servers.splice(0).map((s) => s.close()));
  });
  return async (opts = {}) => {
    const s = await startHubServer({ repos: [], ...defaults, ...opts });
    servers.push(s);
    return s;
  };
}
