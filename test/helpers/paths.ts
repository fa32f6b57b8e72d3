import { fileURLToPath } from 'node:url';

/** The repository root, found from this compiled file's place in dist/test/helpers/. */
export const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));

/** The built CLI entry point (dist/bin/warren.js). */
export const warrenBin = fileURLToPath(new URL('../../../dist/bin/warren.js', import.meta.url));
