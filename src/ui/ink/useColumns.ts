import { useStdout } from "ink";
import { useEffect, useState } from "react";

/**
 * The terminal's width, kept current: Ink lays its boxes out again on a resize but does not re-render
 * components, and the live lines decide their fields from the width.
 */
export function useColumns(): number {
  const { stdout } = useStdout();
  const [columns, setColumns] = useState(() => stdout.columns || 80);
  useEffect(() => {
    const onResize = () => setColumns(stdout.columns || 80);
    stdout.on("resize", onResize);
    return () => {
      stdout.off("resize", onResize);
    };
  }, [stdout]);
  return columns;
}

/** Re-renders every `ms` while mounted, for clocks (elapsed time) that move without events. */
export function useTick(ms: number): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), ms);
    t.unref?.();
    return () => clearInterval(t);
  }, [ms]);
  return now;
}
