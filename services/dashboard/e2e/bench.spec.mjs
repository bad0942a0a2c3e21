// The browser side of `make bench-dashboard` (tests/src/bin/dashboard-bench.rs): opens the dispatch
// view with ?perf=1, waits for every cart, asks the program to run the load, then prints the
// page's measurements on one line: PERF {frames, flushMs, painted, received}.
import { launch, ask, step, until } from './lib.mjs';
import { join } from 'node:path';

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
  await ask('LOAD');
  await page.waitForTimeout(1000);
  await page.screenshot({ path: join(process.env.SCREENSHOT_DIR, 'bench-dispatch.png') });
  const perf = await page.evaluate(() => {
    const p = window.__dashPerf;
    return { frames: p.frames, flushMs: p.flushMs, painted: p.painted, received: p.received };
  });
  console.log('PERF ' + JSON.stringify(perf));
  await context.close();
  process.exit(0);
} catch (e) {
  console.log(`FAILED: ${e && e.stack ? e.stack : e}`);
  await context.close();
  process.exit(1);
}
