// Debian's chromium as a test program, driven by playwright-core (no browser download): headless,
// no sandbox (tests run as root in a container), nothing that talks to the network by itself, and
// a fresh profile per launch.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type BrowserContext, chromium } from 'playwright-core';
import type { Closable } from './process.js';

export interface BrowserProgram extends Closable {
  readonly context: BrowserContext;
}

export function chromiumPath(): string {
  return process.env.CARDINAL_CHROMIUM ?? '/usr/bin/chromium';
}

export async function startBrowser(): Promise<BrowserProgram> {
  const profile = mkdtempSync(join(tmpdir(), 'cardinal-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: chromiumPath(),
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
    ],
    viewport: { width: 1280, height: 900 },
  });
  return {
    context,
    dirs: [profile],
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}
