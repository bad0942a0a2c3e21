// The dashboard under the set-up's NATS accounts (started by tests/tests/dashboard.rs,
// `dashboard_operator_signs_in_under_the_accounts`, which passes DASH_URL with ?nats=,
// OPERATOR_PASSWORD and SCREENSHOT_DIR). Anonymous, the page is the read-only `dashboard` user:
// its exec and request forms show the bus's permission error. Signed in as operator they work.
import { launch, step, until } from './lib.mjs';
import { join } from 'node:path';

const url = process.env.DASH_URL;
const shots = process.env.SCREENSHOT_DIR;
const shot = (page, name) => page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });

const context = await launch();
const page = context.pages()[0] ?? (await context.newPage());
page.on('pageerror', (e) => console.log(`page error: ${e}`));
const go = async (hash) => {
  await page.evaluate((h) => (location.hash = h), hash);
  await page.waitForTimeout(50);
};
const connectedAs = (user) => page.waitForSelector(`[data-testid=conn-user][data-user="${user}"]`, { timeout: 20000 }).then(() => page.waitForSelector('[data-testid=conn-state][data-state=connected]', { timeout: 20000 }));
const exec = async () => {
  await page.selectOption('[data-testid=exec-form] select[name=module]', 'Display_1');
  await page.selectOption('[data-testid=exec-form] select[name=method]', 'power');
  await page.check('[data-testid=exec-form] input[name=arg-state]');
  await page.click('[data-testid=exec-form] button');
};
const request = async () => {
  await page.selectOption('[data-testid=request-form] select[name=server_id]', 'ml-node-4');
  await page.fill('[data-testid=request-form] input[name=datasets]', 'imagenet_train');
  await page.click('[data-testid=request-form] button');
};

try {
  step('anonymous: connected read-only, the views load');
  await page.goto(url + '#overview');
  await connectedAs('');
  if (!(await page.textContent('[data-testid=conn-user]')).includes('anonymous (read-only)')) throw new Error(`the header does not say anonymous (read-only): ${await page.textContent('[data-testid=conn-user]')}`);
  await page.waitForSelector('[data-testid=health] tbody tr', { timeout: 20000 });
  await go('dfs');
  // dfs.query.servers reaches the service through the CLIENTS account's imports.
  await page.waitForSelector('[data-testid=servers] [data-alive=true]', { timeout: 20000 });

  step('anonymous: an exec shows the bus\'s permission error');
  await go('engine');
  await page.click('[data-testid=systems] [data-system=auth-sys]', { timeout: 20000 });
  await page.waitForSelector('[data-place=Display_1][data-module=auth-disp]');
  await exec();
  const refused = await page.waitForSelector('[data-testid=exec-result]:has-text("permission_denied")', { timeout: 10000 });
  const text = await refused.textContent();
  console.log(`anonymous exec: ${text}`);
  if (!/Permissions Violation/i.test(text) || !text.includes('engine.exec') || !text.includes('sign in as operator')) throw new Error(`unclear refusal: ${text}`);
  await shot(page, 'engine-refused');

  step('anonymous: a dataset request shows the bus\'s permission error');
  await go('dispatch');
  await page.waitForSelector('[data-testid=carts] tbody tr');
  await request();
  await page.waitForSelector('[data-testid=request-error]:has-text("permission_denied")', { timeout: 10000 });
  await page.waitForSelector('[data-testid=request-error]:has-text("dispatch.cmd.request-datasets")');
  await shot(page, 'dispatch-refused');

  step('a wrong password is refused and the page stays anonymous');
  await page.click('[data-testid=signin-open]');
  await page.fill('[data-testid=signin-form] input[name=user]', 'operator');
  await page.fill('[data-testid=signin-form] input[name=password]', 'not-the-password');
  await page.click('[data-testid=signin-form] button');
  await page.waitForSelector('[data-testid=signin-error]:has-text("refused")', { timeout: 20000 });
  await connectedAs('');
  await shot(page, 'signin-refused');

  step('sign in as operator: the page reconnects as operator');
  await page.fill('[data-testid=signin-form] input[name=password]', process.env.OPERATOR_PASSWORD);
  await page.click('[data-testid=signin-form] button');
  await connectedAs('operator');
  if (await page.$('[data-testid=signin-error]')) throw new Error('a sign-in error is still shown');
  // The password is not kept anywhere but memory.
  const stored = await page.evaluate(() => JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }) + document.cookie);
  if (stored.includes(process.env.OPERATOR_PASSWORD)) throw new Error('the password was stored');

  step('operator: the request goes out');
  await request();
  const result = await page.waitForSelector('[data-testid=request-result]', { timeout: 10000 });
  console.log(`operator request: ${await result.textContent()}`);

  step('operator: the exec result appears and the value follows');
  await go('engine');
  await page.waitForSelector('[data-place=Display_1][data-module=auth-disp]', { timeout: 20000 });
  await exec();
  await page.waitForSelector('[data-testid=exec-result]:has-text("result: true")', { timeout: 10000 });
  await page.waitForSelector('[data-place=Display_1] [data-status=power][data-value=true]', { timeout: 10000 });
  await shot(page, 'engine-operator');

  step('sign out: anonymous again, exec refused again');
  await page.click('[data-testid=signout]');
  await connectedAs('');
  await page.waitForSelector('[data-place=Display_1][data-module=auth-disp]', { timeout: 20000 });
  await exec();
  await page.waitForSelector('[data-testid=exec-result]:has-text("permission_denied")', { timeout: 10000 });

  console.log('dashboard auth spec passed');
  await context.close();
  process.exit(0);
} catch (e) {
  console.log(`FAILED: ${e && e.stack ? e.stack : e}`);
  try { await shot(page, 'failure-auth'); } catch {}
  await context.close();
  process.exit(1);
}
