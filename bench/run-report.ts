import type { Results } from './run.js';
export async function renderReport(_r: Results, _dir: string, _stem: string): Promise<string[]> {
  return [];
}
