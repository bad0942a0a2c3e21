// The browser side of `make bench-dashboard` (tests/src/bin/dashboard-bench.rs): opens the dispatch
// view with ?perf=1, waits for every cart, asks the program to run the load, then prints the
// page's measurements on one line: PERF {frames, flushMs, drawMs, pageLagMs, painted, received}.
import { launch, ask, step, until } from './lib.mjs';
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';

function writeProfile(profile, file) {
  const self = new Map();
  const dt = profile.timeDeltas;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  let total = 0;
  profile.samples.forEach((id, i) => {
    const n = byId.get(id);
    const f = n.callFrame;
    const key = `${f.functionName || '(anon)'} ${f.url.split('/').pop()}:${f.lineNumber + 1}`;
    const us = dt[i] ?? 0;
    total += us;
    self.set(key, (self.get(key) ?? 0) + us);
  });
  const rows = [...self].sort((a, b) => b[1] - a[1]).slice(0, 40);
  writeFileSync(file, `total ${(total / 1000).toFixed(0)} ms\n` + rows.map(([k, us]) => `${(us / 1000).toFixed(1).padStart(9)} ms ${(100 * us / total).toFixed(1).padStart(5)}% ${k}`).join('\n') + '\n');
}

const context = await launch();
const page = context.pages()[0] ?? (await context.newPage());
const carts = Number(process.env.CARTS || 1000);
try {
  step('open the dispatch view');
  await page.goto(process.env.DASH_URL);
  await page.waitForSelector('[data-testid=conn-state][data-state=connected]', { timeout: 20000 });
  await until(`${carts} carts on the map`, () => page.evaluate((n) => window.__dashCarts().length >= n, carts), 60000, 250);
  await page.evaluate(() => window.__dashPerf.reset());
  step('load');
  // DASH_CPU_PROFILE=file: a V8 CPU profile of the page during the load, its self time summed
  // per function (top 40) written to that file (build the page unminified to read the names).
  const cdp = process.env.DASH_CPU_PROFILE ? await context.newCDPSession(page) : null;
  if (cdp) { await cdp.send('Profiler.enable'); await cdp.send('Profiler.setSamplingInterval', { interval: 500 }); await cdp.send('Profiler.start'); }
  await ask('LOAD');
  if (cdp) writeProfile((await cdp.send('Profiler.stop')).profile, process.env.DASH_CPU_PROFILE);
  await page.waitForTimeout(1000);
  await page.screenshot({ path: join(process.env.SCREENSHOT_DIR, 'bench-dispatch.png') });
  const perf = await page.evaluate(() => {
    const p = window.__dashPerf;
    return { frames: p.frames, flushMs: p.flushMs, drawMs: p.drawMs, pageLagMs: p.pageLagMs, painted: p.painted, received: p.received };
  });
  console.log('PERF ' + JSON.stringify(perf));
  await context.close();
  process.exit(0);
} catch (e) {
  console.log(`FAILED: ${e && e.stack ? e.stack : e}`);
  await context.close();
  process.exit(1);
}
