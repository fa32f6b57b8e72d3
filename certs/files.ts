/**
 * Writing key and certificate files: all-or-nothing checks before the first write, private keys
 * with mode 0600, and no silent overwrite.
 */
import { randomBytes } from 'node:crypto';
import { chmod, lstat, mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ConfigError } from '../protocol/errors.js';

/** One file to write into an output directory. */
export interface OutputFile {
  /** File name inside the directory. */
  readonly name: string;
  readonly content: string;
  /** 0o600 for private keys, 0o644 for certificates and public keys. */
  readonly mode: number;
}

/**
 * Writes `files` into `dir` (created with mode 0700 when missing) and returns their paths. Unless
 * `force`, refuses with ConfigError (ERR_WARREN_USAGE) when any of them exists, before writing
 * anything. With `force`, each file is replaced atomically (written beside it, then renamed).
 */
export async function writeOutputFiles(dir: string, files: readonly OutputFile[], force: boolean): Promise<string[]> {
  const paths = files.map((f) => join(dir, f.name));
  if (!force) {
    const existing = (await Promise.all(paths.map(async (p) => ((await exists(p)) ? p : undefined)))).filter((p) => p !== undefined);
    if (existing.length > 0) throw new ConfigError(existing.map((p) => `${p} already exists; pass --force to replace it`), 'ERR_WARREN_USAGE');
  }
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new ConfigError([`${dir}: cannot create the directory (${(err as NodeJS.ErrnoException).code ?? 'error'})`], 'ERR_WARREN_CONFIG', { cause: err });
  }
  for (const [i, file] of files.entries()) {
    const path = paths[i]!;
    try {
      if (force) {
        const temporary = `${path}.${randomBytes(6).toString('hex')}.tmp`;
        try {
          await writeFile(temporary, file.content, { flag: 'wx', mode: file.mode });
          await chmod(temporary, file.mode); // the umask may have taken bits away
          await rename(temporary, path);
        } finally {
          await rm(temporary, { force: true });
        }
      } else {
        // 'wx' fails if the file appeared since the check: never overwrite without --force.
        await writeFile(path, file.content, { flag: 'wx', mode: file.mode });
        await chmod(path, file.mode);
      }
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'error';
      if (code === 'EEXIST') throw new ConfigError([`${path} already exists; pass --force to replace it`], 'ERR_WARREN_USAGE', { cause: err });
      throw new ConfigError([`${path}: cannot write (${code})`], 'ERR_WARREN_CONFIG', { cause: err });
    }
  }
  return paths;
}

async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch {
    return false;
  }
}
