/**
 * mulberry32: a small, fast 32-bit generator; the same seed gives the same draws (a held-out split, a
 * seeded sampler). Written here because Math.random cannot be seeded and no dependency offers one this small.
 */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 0x1_0000_0000;
  };
}
