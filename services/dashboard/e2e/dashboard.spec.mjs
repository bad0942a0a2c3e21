// The dashboard against the real stack (started by tests/tests/dashboard.rs, which passes
// DASH_URL, EXEC_TOKEN, FILE_ID, SCREENSHOT_DIR). Exits non-zero on the first failed check.
import { launch, ask, step, until } from './lib.mjs';
import { join } from 'node:path';

const url = process.env.DASH_URL;
const shots = process.env.SCREENSHOT_DIR;
const shot = (page, name) => page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });

const context = await launch();
const page = context.pages()[0] ?? (await context.newPage());
const errors = [];
page.on('pageerror', (e) => { console.log(`page error: ${e}`); errors.push(String(e)); });
page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') { console.log(`console ${m.type()}: ${m.text()}`); if (m.type() === 'error') errors.push(m.text()); } });
const ranges = [];
page.on('request', (r) => {
  if (r.url().includes('/files/') && r.headers()['range']) ranges.push(r.headers()['range']);
});
const rq = (subject, body) => page.evaluate(([s, b]) => window.__dash.conn.request(s, b), [subject, body]);
const go = async (hash) => {
  await page.evaluate((h) => (location.hash = h), hash);
  await page.waitForTimeout(50);
};

try {
  step('page loads and connects');
  await page.goto(url + '#overview');
  await page.waitForSelector('[data-testid=conn-state][data-state=connected]', { timeout: 20000 });
  await page.waitForSelector('[data-testid=health] tbody tr', { timeout: 20000 });
  await until('every service ready', async () => (await page.textContent('[data-testid=health] h2')).includes('ready'));
  await page.waitForSelector('[data-testid=instances] tbody tr');
  await shot(page, 'overview');

  step('cluster: the tree updates after a graph commit');
  await go('cluster?manager=dash-m1');
  await page.click('[data-manager=dash-m1]');
  await page.waitForSelector('[data-testid=state-name]:has-text("WORKERS_CONNECTED")');
  await rq('cluster.cmd.commit-graph', {
    manager_id: 'dash-m1',
    nodes: [
      { id: 'cam', name: 'camera', port: 7001, data_type: 'Video', dashboard_component: 'video', capabilities: ['start', 'stop'] },
      { id: 'mic', name: 'microphone', port: 7002, data_type: 'Audio', dashboard_component: null, capabilities: ['start'] },
      { id: 'fuse', name: 'fusion', port: 7003, data_type: 'Series', dashboard_component: null, capabilities: ['callibrate', 'start'] },
      { id: 'store', name: 'recorder', port: 7004, data_type: 'Series', dashboard_component: null, capabilities: ['stop'] },
    ],
    edges: [['cam', 'fuse'], ['mic', 'fuse'], ['fuse', 'store']],
    mapping: { cam: 'w1', mic: 'w1', fuse: 'w2', store: 'w2' },
  });
  await page.waitForSelector('[data-testid=state-name]:has-text("NODES_READY")');
  await page.waitForSelector('[data-testid=dag] [data-node=fuse]');
  await page.click('[data-testid=dag] [data-node=cam]');
  await page.waitForSelector('[data-testid=node-details]:has-text("Video")');

  step('cluster: a forced gap is counted and the tree fetched again');
  const v = Number((await page.textContent('[data-testid=tree-version]')).replace(/\D/g, ''));
  const gaps0 = Number(await page.textContent('[data-testid=gaps]'));
  await page.evaluate((version) => window.__dash.conn.publish('cluster.tree.dash-m1', { version, op: 'upsert', path: 'state_name', value: 'BOGUS' }), v + 3);
  await until('the gap counted', async () => Number(await page.textContent('[data-testid=gaps]')) > gaps0);
  // The refetched tree is the service's, not the bogus delta's.
  await until('the tree fetched again', async () => (await page.textContent('[data-testid=state-name]')) === 'NODES_READY');
  // And it follows the live deltas again.
  await rq('cluster.cmd.node-report', { manager_id: 'dash-m1', node_id: 'cam', running: true });
  await page.waitForSelector('[data-testid=dag] [data-node=cam][data-running=true]');
  await shot(page, 'cluster');

  step('dispatch: a cart moves on the map after a request');
  await go('dispatch');
  await page.waitForSelector('[data-testid=carts] tbody tr');
  const dataset = await until('a dataset to request', () => page.evaluate(() => document.querySelector('#datasets option')?.getAttribute('value')));
  await page.selectOption('[data-testid=request-form] select[name=server_id]', 'ml-node-12');
  await page.fill('[data-testid=request-form] input[name=datasets]', dataset);
  await page.click('[data-testid=request-form] button');
  const result = await page.waitForSelector('[data-testid=request-result]', { timeout: 10000 });
  const cart = (await result.textContent()).split(': ')[1].split(' ')[0];
  console.log(`cart ${cart} carries ${dataset}`);
  const flying = () => page.evaluate((id) => window.__dashCarts().find((c) => c.id === id), cart);
  const p0 = await until('the cart in flight', async () => { const c = await flying(); return c && c.status === 'FLIGHT' ? c : null; }, 30000, 50);
  await page.waitForTimeout(400);
  const p1 = await flying();
  const moved = Math.hypot(p1.x - p0.x, p1.y - p0.y);
  console.log(`cart moved ${moved.toFixed(1)} px in 400 ms`);
  if (!(moved > 1)) throw new Error(`cart ${cart} did not move on the map: ${JSON.stringify([p0, p1])}`);

  step('dispatch: the canvas hit-tests carts (pointing shows one, a click selects it)');
  const dpr = await page.evaluate(() => { const cv = document.querySelector('[data-testid=carts-canvas]'); return cv.width / cv.getBoundingClientRect().width / devicePixelRatio; });
  if (Math.abs(dpr - 1) > 0.01) throw new Error(`the canvas is not drawn at the device pixel ratio (${dpr})`);
  const box = await (await page.$('[data-testid=carts-canvas]')).boundingBox();
  await until('a resting cart hovered and selected on the canvas', async () => {
    const rest = await page.evaluate(() => window.__dashCarts().filter((c) => c.status !== 'FLIGHT'));
    const c = rest[Math.floor(Math.random() * rest.length)];
    if (!c) return false;
    await page.mouse.move(box.x + c.x, box.y + c.y);
    const hover = await page.waitForSelector('[data-testid=hover-cart]', { timeout: 2000 }).catch(() => null);
    if (!hover || (await hover.getAttribute('data-cart')) !== c.id) return false;
    await page.mouse.click(box.x + c.x, box.y + c.y);
    const sel = await page.waitForSelector('[data-testid=selected-cart]', { timeout: 2000 }).catch(() => null);
    return sel && (await sel.getAttribute('data-cart')) === c.id;
  }, 15000, 100);
  await page.mouse.move(0, 0);

  step('dispatch: the queue per cart shows the requests waiting for a busy cart');
  // Only dash-qcart holds dash-queue-ds, and its transfer takes minutes: the first request
  // reserves it, the next two wait in its queue, in order.
  const queued = [];
  for (const server of ['ml-node-2', 'ml-node-6', 'ml-node-10']) {
    const r = await rq('dispatch.cmd.request-datasets', { server_id: server, datasets: ['dash-queue-ds'] });
    queued.push(r.request_id);
  }
  await until('two requests in the queue of dash-qcart', async () => {
    const ids = await page.$$eval('[data-testid=queues] [data-queue-cart=dash-qcart] [data-queued]', (els) => els.map((e) => e.getAttribute('data-queued')));
    return JSON.stringify(ids) === JSON.stringify(queued.slice(1));
  }, 20000, 100);
  await page.waitForSelector('[data-testid=carts] tr[data-cart=dash-qcart] [data-queue-length="2"]');
  await shot(page, 'dispatch');

  step('engine: a value changes after an exec and follows a re-order');
  await go('engine');
  // The systems to pick from (engine.query.systems); typing an id still works.
  await page.waitForSelector('[data-testid=systems] [data-system=dash-sys]:has-text("2 modules")', { timeout: 10000 });
  await page.fill('[data-testid=system-form] input', 'no-such-system');
  await page.click('[data-testid=system-form] button');
  await page.waitForSelector('[data-testid=system-form] ~ .pill.bad:has-text("not_found")');
  await page.click('[data-testid=systems] [data-system=dash-sys]');
  await page.waitForSelector('[data-place=Display_1][data-module=dash-disp-1]');
  if ((await page.inputValue('[data-testid=system-form] input')) !== 'dash-sys') throw new Error('picking a system does not fill in its id');
  await page.selectOption('[data-testid=exec-form] select[name=module]', 'Display_1');
  await page.selectOption('[data-testid=exec-form] select[name=method]', 'power');
  await page.check('[data-testid=exec-form] input[name=arg-state]');
  await page.fill('[data-testid=exec-form] input[name=token]', process.env.EXEC_TOKEN);
  await page.click('[data-testid=exec-form] button');
  await page.waitForSelector('[data-testid=exec-result]:has-text("result")', { timeout: 10000 });
  await page.waitForSelector('[data-place=Display_1] [data-status=power][data-value=true]', { timeout: 10000 });
  await rq('engine.cmd.set-system', { system_id: 'dash-sys', modules: ['dash-disp-2', 'dash-disp-1'] });
  await page.waitForSelector('[data-place=Display_2] [data-status=power][data-value=true]', { timeout: 10000 });
  await until('Display_1 shows its new holder', async () => {
    const row = await page.$('[data-place=Display_1]');
    return (await row.getAttribute('data-module')) === 'dash-disp-2' && !(await page.$('[data-place=Display_1] [data-status=power][data-value=true]'));
  });
  // An error code: switch_input without its required argument.
  await page.selectOption('[data-testid=exec-form] select[name=method]', 'switch_input');
  await page.fill('[data-testid=exec-form] input[name=arg-input]', '');
  await page.click('[data-testid=exec-form] button');
  await page.waitForSelector('[data-testid=exec-result]:has-text("invalid_request")', { timeout: 10000 });
  await shot(page, 'engine');

  step('dfs: a file plays and seeks');
  await go('dfs');
  await page.waitForSelector(`[data-file="${process.env.FILE_ID}"]`);
  await page.click(`tr[data-file="${process.env.FILE_ID}"]`);
  await page.waitForSelector('[data-testid=chunks] tbody tr');
  const under = await page.textContent('[data-testid=under-replicated-files]');
  if (under.trim() !== '0') throw new Error(`under-replicated files: ${under}`);
  await page.waitForSelector('[data-testid=servers] [data-alive=true]');
  const played = await page.evaluate(async () => {
    const v = document.querySelector('[data-testid=video]');
    v.muted = true;
    await v.play();
    await new Promise((r) => setTimeout(r, 1200));
    const t1 = v.currentTime;
    v.currentTime = 20;
    await new Promise((r, j) => { v.addEventListener('seeked', r, { once: true }); setTimeout(() => j(new Error('no seeked event')), 8000); });
    await new Promise((r) => setTimeout(r, 500));
    return { t1, t2: v.currentTime, duration: v.duration, error: v.error && v.error.message };
  });
  console.log(`video: ${JSON.stringify(played)}, ranges ${JSON.stringify(ranges.slice(0, 5))}`);
  if (!(played.t1 > 0.3)) throw new Error(`the file did not play: ${JSON.stringify(played)}`);
  if (!(played.t2 >= 19.9 && played.t2 < 25)) throw new Error(`the seek did not land: ${JSON.stringify(played)}`);
  if (!ranges.length) throw new Error('no Range request was made');
  await shot(page, 'dfs');

  step('shop: histogram, lookup, a checkout appears');
  await go('shop');
  await page.waitForSelector('[data-testid=histogram] h2:has-text("16 shards")');
  await page.waitForSelector('[data-testid=histogram] rect[data-keys="1"]');
  await rq('shop.cmd.add-item', { customer_id: 'dash-buyer', item_id: 'lamp', offered_price: 30, item_count: 1, special_sale: null, sale_expiration: null });
  await rq('shop.cmd.checkout', { customer_id: 'dash-buyer' });
  await page.waitForSelector('[data-testid=checkouts] td:has-text("dash-buyer")', { timeout: 10000 });
  await page.fill('[data-testid=cart-form] input', 'dash-lookup');
  await page.click('[data-testid=cart-form] button');
  await page.waitForSelector('[data-testid=cart] td:has-text("book")');
  await shot(page, 'shop');

  step('reconnect: "reconnecting" while nats-server is down, then every view fetches again');
  await go('cluster?manager=dash-m1');
  await page.waitForSelector('[data-testid=state-name]');
  const reconnects0 = await page.textContent('[data-testid=reconnects]');
  await ask('STOP_NATS');
  await page.waitForSelector('[data-testid=conn-state][data-state=reconnecting]', { timeout: 15000 });
  await page.waitForTimeout(1500);
  await shot(page, 'reconnecting');
  await ask('START_NATS');
  await page.waitForSelector('[data-testid=conn-state][data-state=connected]', { timeout: 30000 });
  if ((await page.textContent('[data-testid=reconnects]')) === reconnects0) throw new Error('no reconnect counted');
  // A change made after the reconnect reaches the page (subscriptions and fetches are back).
  await until('the cluster service back', async () => {
    try { await rq('cluster.cmd.node-report', { manager_id: 'dash-m1', node_id: 'fuse', running: true }); return true; } catch { return false; }
  }, 30000, 500);
  await page.waitForSelector('[data-testid=dag] [data-node=fuse][data-running=true]', { timeout: 15000 });
  await go('overview');
  await page.waitForSelector('[data-testid=health] tbody tr');
  await shot(page, 'overview-after-reconnect');

  const real = errors.filter((e) => !/WebSocket|ERR_CONNECTION_REFUSED|net::/.test(e));
  if (real.length) throw new Error(`page errors: ${real.join('\n')}`);
  console.log('dashboard spec passed');
  await context.close();
  process.exit(0);
} catch (e) {
  console.log(`FAILED: ${e && e.stack ? e.stack : e}`);
  try { await shot(page, 'failure'); } catch {}
  await context.close();
  process.exit(1);
}
