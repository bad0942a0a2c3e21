// Shared by the browser specs: Chromium through playwright-core, as the machine allows it.
import { chromium } from 'playwright-core';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

export async function launch() {
  const userDataDir = mkdtempSync(join(tmpdir(), 'dash-chromium-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    viewport: { width: 1440, height: 960 },
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--autoplay-policy=no-user-gesture-required',
    ],
  });
  return context;
}

const rl = createInterface({ input: process.stdin });
const answers = [];
const waiters = [];
rl.on('line', (l) => (waiters.length ? waiters.shift()(l) : answers.push(l)));

/** Asks the Rust test to do something only it can (stop / start nats-server). */
export async function ask(command) {
  process.stdout.write(`@@${command}\n`);
  const answer = answers.length ? answers.shift() : await new Promise((r) => waiters.push(r));
  if (answer !== 'ok') throw new Error(`${command}: ${answer}`);
}

export function step(name) {
  console.log(`step: ${name}`);
}

/** Polls `fn` (in Node) until it returns a truthy value. */
export async function until(what, fn, timeoutMs = 20000, everyMs = 100) {
  const end = Date.now() + timeoutMs;
  let last;
  while (Date.now() < end) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`timed out waiting for ${what} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
}
