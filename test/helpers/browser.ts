/**
 * Headless Chromium for the browser suites: Debian's /usr/bin/chromium driven by playwright-core
 * (which never downloads a browser). Each launch gets a fresh, empty profile (Playwright makes a
 * new user-data-dir per launch and removes it on close), and preview hosts `*.preview.test`
 * resolve to 127.0.0.1. Screenshots go to `.tap/screenshots/<suite>/` (git-ignored with .tap/),
 * cleared when the suite starts; the folder is printed in the test output.
 */
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser, type BrowserContext, type BrowserContextOptions, type Page } from 'playwright-core';
import type { Test } from 'tap';
import { repoRoot } from './paths.js';

/** Where the Debian package puts Chromium. */
export const CHROMIUM_PATH = '/usr/bin/chromium';

/** Flags for headless Chromium as root in a container, with no traffic of its own. */
export const CHROMIUM_ARGS: readonly string[] = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--host-resolver-rules=MAP *.preview.test 127.0.0.1',
];

/** A launched browser for one suite, closed at the suite's teardown. */
export interface TestBrowser {
  browser: Browser;
  /** The suite's screenshot folder. */
  screenshots: string;
  /** A fresh context (its own cookie jar), closed with the browser. */
  context(options?: BrowserContextOptions): Promise<BrowserContext>;
  /** A page in a fresh context; page errors and failed requests are reported as test comments. */
  page(options?: BrowserContextOptions): Promise<Page>;
  /** Saves a full-page PNG as `<name>.png` in the screenshot folder; returns its path. */
  screenshot(page: Page, name: string): Promise<string>;
}

/** Launches Chromium for the suite `suite` (the screenshot folder's name). */
export async function launchBrowser(t: Test, suite: string): Promise<TestBrowser> {
  const screenshots = join(repoRoot, '.tap', 'screenshots', suite);
  rmSync(screenshots, { recursive: true, force: true });
  mkdirSync(screenshots, { recursive: true });
  t.comment(`screenshots: ${screenshots}`);
  const browser = await chromium.launch({ executablePath: CHROMIUM_PATH, headless: true, args: [...CHROMIUM_ARGS] });
  t.teardown(() => browser.close());
  const context = (options: BrowserContextOptions = {}): Promise<BrowserContext> => browser.newContext(options);
  return {
    browser,
    screenshots,
    context,
    async page(options) {
      const page = await (await context(options)).newPage();
      page.on('pageerror', (err) => t.comment(`page error on ${page.url()}: ${err.message}`));
      return page;
    },
    async screenshot(page, name) {
      const path = join(screenshots, `${name}.png`);
      await page.screenshot({ path, fullPage: true });
      return path;
    },
  };
}

/** Waits until the element `selector` of `page` has text matching `pattern`; returns the text. */
export async function waitForText(page: Page, selector: string, pattern: RegExp, timeoutMs = 15_000): Promise<string> {
  const handle = await page.waitForFunction(
    ({ selector, source, flags }) => {
      // Runs in the page; this project compiles without the DOM library, hence the narrow type.
      const doc = (globalThis as unknown as { document: { querySelector(s: string): { textContent: string | null } | null } }).document;
      const text = doc.querySelector(selector)?.textContent ?? '';
      return new RegExp(source, flags).test(text) ? text : false;
    },
    { selector, source: pattern.source, flags: pattern.flags },
    { timeout: timeoutMs },
  );
  return (await handle.jsonValue()) as string;
}
