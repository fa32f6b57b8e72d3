/**
 * A real Vite dev server as a sandbox app. Vite is not a dependency of this project: it is
 * installed with npm into a cache folder under the system temp directory, keyed by the version
 * asked for, so that only the first run pays for the download. The install goes to a scratch
 * folder first and is renamed into place, so a run that stops half-way leaves no broken cache.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './apps.js';
import { startProcess, type Proc } from './process.js';

/** The Vite the browser suite runs. */
export const VITE_SPEC = 'vite@7';

/** Longest time an install may take. */
const INSTALL_TIMEOUT_MS = 240_000;

/** Returns the path of vite.js for `spec`, installing it into the cache first when needed. */
export async function installVite(spec = VITE_SPEC): Promise<string> {
  const root = join(tmpdir(), 'warren-vite-cache');
  const dir = join(root, spec.replace(/[^A-Za-z0-9@.-]/g, '_'));
  const bin = join(dir, 'node_modules', 'vite', 'bin', 'vite.js');
  if (existsSync(bin)) return bin;
  mkdirSync(root, { recursive: true });
  const scratch = mkdtempSync(join(root, '.install-'));
  try {
    await new Promise<void>((resolve, reject) => {
      execFile(
        'npm',
        ['install', '--prefix', scratch, spec, '--no-audit', '--no-fund', '--no-save', '--no-package-lock', '--loglevel=error'],
        { cwd: scratch, timeout: INSTALL_TIMEOUT_MS, maxBuffer: 16 * 1024 * 1024 },
        (err, _stdout, stderr) => {
          if (!err) return resolve();
          // npm's first meaningful lines name the cause (code, errno, the failed request).
          const lines = (stderr || err.message).split('\n').map((l) => l.replace(/^npm (error|ERR!)\s*/, '').trim()).filter((l) => l !== '');
          reject(new Error(`npm install ${spec} failed: ${lines.slice(0, 3).join(' / ')}`));
        },
      );
    });
    if (!existsSync(join(scratch, 'node_modules', 'vite', 'bin', 'vite.js'))) throw new Error(`npm install ${spec} left no vite/bin/vite.js`);
    try {
      renameSync(scratch, dir);
    } catch (err) {
      // Another run finished first: use its copy.
      if (!existsSync(bin)) throw err;
    }
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
  return bin;
}

/** A running Vite dev server over a project folder. */
export interface ViteServer {
  port: number;
  /** The project folder: edit its files to trigger HMR. */
  dir: string;
  proc: Proc;
  stop(): Promise<void>;
}

/**
 * Writes `files` (path relative to the project → content) into a fresh project folder and starts
 * `vite --host 127.0.0.1 --port <free> --strictPort` there; resolves once Vite says it is ready.
 */
export async function startVite(viteBin: string, files: Record<string, string>): Promise<ViteServer> {
  const dir = mkdtempSync(join(tmpdir(), 'warren-vite-app-'));
  for (const [name, content] of Object.entries(files)) writeFileSync(join(dir, name), content);
  const port = await freePort();
  const proc = startProcess(process.execPath, [viteBin, '--host', '127.0.0.1', '--port', String(port), '--strictPort'], { NO_COLOR: '1', FORCE_COLOR: '0', CI: '1' }, dir);
  try {
    await proc.waitFor(/ready in|Local:/, 30_000);
  } catch (err) {
    await proc.stop();
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    port,
    dir,
    proc,
    async stop() {
      await proc.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
