#!/usr/bin/env node
// End-to-end test of the dashboard against a running Agent PaaS server.
//
//   E2E_BASE_URL=http://127.0.0.1:8080 CHROMIUM=/usr/bin/chromium npm run e2e
//
// Signs up a fresh tenant, creates an agent on the mock model, chats (with a tool step),
// reloads in the middle of a long answer and checks it resumes, finds the session in the
// history, creates an API key and uses it on the OpenAI-compatible API, invites a viewer and
// checks the viewer cannot create agents. Screenshots go to e2e/output/screenshots/, or to the
// folder in E2E_SCREENSHOTS_DIR (`just screenshots` refreshes docs/screenshots/ this way).
import { chromium } from 'playwright-core';
import { mkdir, readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

const here = dirname(fileURLToPath(import.meta.url));
const BASE = (process.env.E2E_BASE_URL || 'http://127.0.0.1:8080').replace(/\/$/, '');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SHOTS = process.env.E2E_SCREENSHOTS_DIR
  ? resolve(process.env.E2E_SCREENSHOTS_DIR)
  : resolve(here, 'output/screenshots');
const OUTPUT = resolve(here, 'output');
const HEADED = process.env.E2E_HEADED === '1';
const TIMEOUT = Number(process.env.E2E_TIMEOUT_MS || 20000);

const suffix = randomBytes(4).toString('hex');
const tenant = `e2e-${suffix}`;
const admin = { email: `admin@${tenant}.example`, password: 'correct horse battery staple', name: 'Ada Admin' };
const viewerEmail = `viewer@${tenant}.example`;
const agentName = 'calc';

let step = 'start';
const log = (message) => console.log(`[e2e] ${message}`);

class E2EError extends Error {}
function expect(condition, message) {
  if (!condition) throw new E2EError(message);
}

async function shot(page, name, fullPage = false) {
  await page.screenshot({ path: resolve(SHOTS, name), fullPage });
  log(`  screenshot ${name}`);
}

async function run() {
  await mkdir(SHOTS, { recursive: true });
  await mkdir(OUTPUT, { recursive: true });

  const health = await fetch(`${BASE}/healthz`).catch((err) => {
    throw new E2EError(`the server at ${BASE} is not reachable (${err.message}); set E2E_BASE_URL`);
  });
  expect(health.ok, `GET ${BASE}/healthz answered ${health.status}`);

  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: !HEADED,
    args: ['--no-sandbox', '--disable-dev-shm-usage'],
  });
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 }, baseURL: BASE });
  context.setDefaultTimeout(TIMEOUT);
  const page = await context.newPage();
  page.on('dialog', (dialog) => void dialog.accept());
  const consoleErrors = [];
  page.on('pageerror', (err) => consoleErrors.push(err.message));
  const eventRequests = [];
  page.on('request', (request) => {
    if (/\/api\/v1\/runs\/[^/]+\/events/.test(request.url())) {
      eventRequests.push({ url: request.url(), lastEventId: request.headers()['last-event-id'] });
    }
  });

  try {
    // ---------------------------------------------------------------- sign up
    step = 'sign up';
    log(`${step}: tenant ${tenant}`);
    await page.goto('/login');
    await page.getByRole('heading', { name: 'Log in', exact: true }).waitFor();
    await shot(page, 'login.png');
    await page.getByRole('link', { name: 'Create a tenant' }).click();
    await page.getByLabel('Tenant name').fill(tenant);
    await page.getByLabel('Email').fill(admin.email);
    await page.getByLabel('Password', { exact: true }).fill(admin.password);
    await page.getByLabel('Display name (optional)').fill(admin.name);
    await page.getByRole('button', { name: 'Sign up' }).click();
    await page.waitForURL('**/agents');
    await page.getByRole('heading', { name: 'Agents', exact: true }).waitFor();
    await page.locator('.whoami-name', { hasText: admin.name }).waitFor();

    // ---------------------------------------------------------- create agent
    step = 'create agent';
    log(step);
    await page.getByRole('link', { name: 'New agent' }).click();
    await page.getByLabel('Name', { exact: true }).fill(agentName);
    await page.getByLabel('Display name').fill('Calculator bot');
    await page.getByLabel('Description').fill('Answers arithmetic with the calculator tool.');
    await page.getByLabel('System prompt').fill('You are a precise assistant. Use the calculator for arithmetic.');
    expect((await page.getByLabel('Provider').inputValue()) === 'mock', 'the default provider is not the mock');
    await page.getByRole('checkbox', { name: /calculator/ }).check();
    await page.getByRole('button', { name: 'Create agent' }).click();
    await page.waitForURL(/\/agents\/[0-9a-f-]{36}$/);
    await page.getByRole('heading', { name: 'Calculator bot', exact: true }).waitFor();
    await page.getByRole('link', { name: 'Back to agents' }).click();
    await page.getByRole('link', { name: 'Calculator bot' }).waitFor();
    await shot(page, 'agents.png');

    // ----------------------------------------------------- chat with a tool
    step = 'chat with a tool step';
    log(step);
    await page.getByRole('link', { name: 'Chat', exact: true }).click();
    await page.waitForURL('**/chat');
    await page.getByLabel('Agent').selectOption({ label: 'Calculator bot (mock)' });
    await page.getByLabel('Message').fill('what is 6 * 7?');
    await page.getByRole('button', { name: 'Send' }).click();
    await page.waitForURL(/\/chat\/[0-9a-f-]{36}$/);
    const sessionUrl = page.url();
    const answer = page.locator('.turn-assistant').last();
    await answer.getByText(/The calculator tool returned: 42/).waitFor();
    const toolStep = answer.locator('summary', { hasText: 'Tool call: calculator' });
    await toolStep.waitFor();
    await answer.getByRole('button', { name: 'Copy answer' }).waitFor();
    await toolStep.click();
    await answer.getByText('"expression"').waitFor();
    const thought = answer.locator('summary', { hasText: 'Thought' }).first();
    expect(await thought.isVisible(), 'no thought step is shown');
    await shot(page, 'chat.png');

    // ------------------------------------------ long answer, reload mid-way
    step = 'reload in the middle of a long answer';
    log(step);
    eventRequests.length = 0;
    await page.getByLabel('Message').fill('[mock:delay_ms=40] [mock:chunks=60] go');
    await page.getByRole('button', { name: 'Send' }).click();
    const longTurn = page.locator('.turn-assistant').last();
    await longTurn.getByText(/word8\b/).waitFor();
    expect(await page.getByRole('button', { name: 'Stop' }).isVisible(), 'no Stop button while streaming');
    const saved = await page.evaluate(() => sessionStorage.getItem('paas.activeRun'));
    expect(saved, 'the running answer was not kept in sessionStorage');
    const savedRun = JSON.parse(saved);
    expect(savedRun.runId && savedRun.lastEventId > 0, 'sessionStorage lacks the run id or last event id');
    await page.reload();
    expect(page.url() === sessionUrl, `the reload left the session (${page.url()})`);
    const resumed = page.locator('.turn-assistant').last();
    await resumed.getByText(/word60\b/).waitFor({ timeout: 30000 });
    await resumed.getByRole('button', { name: 'Copy answer' }).waitFor({ timeout: 30000 });
    const resumedText = await resumed.innerText();
    for (const word of ['word1 ', 'word30 ', 'word59 ']) {
      const count = resumedText.split(word).length - 1;
      expect(count === 1, `after the reload "${word.trim()}" appears ${count} times in the answer`);
    }
    expect(eventRequests.length > 0, 'the reloaded page did not call GET /runs/{id}/events');
    const resumeRequest = eventRequests[0];
    expect(
      Number(resumeRequest.lastEventId) > 0 || /last_event_id=\d+/.test(resumeRequest.url),
      'the resume request did not send Last-Event-ID',
    );
    log(`  resumed after event ${resumeRequest.lastEventId}`);
    expect(
      (await page.evaluate(() => sessionStorage.getItem('paas.activeRun'))) === null,
      'the finished run is still kept in sessionStorage',
    );

    step = 'stop an answer';
    log(step);
    await page.getByLabel('Message').fill('[mock:delay_ms=60] [mock:chunks=300] a story to stop');
    await page.getByRole('button', { name: 'Send' }).click();
    const stopTurn = page.locator('.turn-assistant').last();
    await stopTurn.getByText(/word5\b/).waitFor();
    const [cancel] = await Promise.all([
      page.waitForResponse((r) => /\/api\/v1\/runs\/[^/]+\/cancel$/.test(r.url())),
      page.getByRole('button', { name: 'Stop' }).click(),
    ]);
    expect(cancel.status() === 202, `cancelling answered ${cancel.status()}`);
    await page.getByRole('button', { name: 'Send' }).waitFor();
    const stoppedText = await page.locator('.turn-assistant').last().innerText();
    expect(!stoppedText.includes('word300'), 'the stopped answer ran to the end');

    // ------------------------------------------------------------ history
    step = 'find the session in history';
    log(step);
    await page.getByRole('link', { name: 'Sessions' }).click();
    await page.getByRole('heading', { name: 'Sessions', exact: true }).waitFor();
    await page.getByLabel('Search titles').fill('6 * 7');
    const row = page.getByRole('link', { name: 'what is 6 * 7?', exact: true });
    await row.waitFor();
    await shot(page, 'sessions.png');
    const [download] = await Promise.all([
      page.waitForEvent('download'),
      page.getByRole('button', { name: 'Export what is 6 * 7? as Markdown' }).click(),
    ]);
    const exported = await readFile(await download.path(), 'utf8');
    expect(exported.includes('The calculator tool returned: 42'), 'the Markdown export lacks the answer');
    log(`  exported ${download.suggestedFilename()}`);
    await row.click();
    await page.waitForURL(sessionUrl);
    await page.getByText('The calculator tool returned: 42').first().waitFor();
    await page.getByRole('link', { name: 'Sessions' }).click();
    await page.getByRole('button', { name: 'Rename what is 6 * 7?' }).click();
    await page.getByLabel('New title').fill('Arithmetic (e2e)');
    await page.getByRole('button', { name: 'Save' }).click();
    await page.getByRole('link', { name: 'Arithmetic (e2e)', exact: true }).waitFor();

    // ------------------------------------------------------------ API key
    step = 'create an API key and use it';
    log(step);
    await page.getByRole('link', { name: 'Settings' }).click();
    await page.getByRole('link', { name: 'API keys' }).click();
    await page.getByLabel('Key name').fill('e2e openai sdk');
    const chatScope = page.getByRole('checkbox', { name: /^chat/ });
    await chatScope.check();
    await page.getByRole('button', { name: 'Create key' }).click();
    const secret = page.getByTestId('new-api-key');
    await secret.waitFor();
    const key = (await secret.innerText()).trim();
    expect(key.startsWith('ap_'), `the new key does not look like a key: ${key.slice(0, 6)}…`);
    await page.getByRole('cell', { name: 'e2e openai sdk', exact: true }).waitFor();
    await shot(page, 'settings-keys.png');
    // Use the key as a person would: with curl, on the OpenAI-compatible API.
    const { stdout } = await execFileAsync('curl', [
      '-sS', '-w', '\n%{http_code}', `${BASE}/v1/chat/completions`,
      '-H', `Authorization: Bearer ${key}`, '-H', 'Content-Type: application/json',
      '-d', JSON.stringify({ model: agentName, messages: [{ role: 'user', content: 'what is 6 * 7?' }] }),
    ]);
    const status = stdout.trim().split('\n').pop();
    const completionBody = JSON.parse(stdout.slice(0, stdout.lastIndexOf('\n')));
    expect(status === '200', `curl POST /v1/chat/completions answered ${status}: ${JSON.stringify(completionBody)}`);
    const content = completionBody.choices?.[0]?.message?.content ?? '';
    expect(content.includes('42'), `the OpenAI-compatible answer lacks 42: ${content}`);
    await page.getByRole('button', { name: 'I have saved it' }).click();
    expect((await page.getByTestId('new-api-key').count()) === 0, 'the key secret is still shown');

    // -------------------------------------------------------------- usage
    step = 'plan and usage';
    log(step);
    await page.getByRole('link', { name: 'Plan & usage' }).click();
    await page.getByRole('heading', { name: 'Plan and quotas', exact: true }).waitFor();
    await page.getByRole('meter', { name: 'Tokens this month' }).waitFor();
    await page.getByRole('heading', { name: 'Tokens per day', exact: true }).waitFor();
    await page.locator('.recharts-bar-rectangle').first().waitFor();
    await shot(page, 'usage.png', true);

    // ------------------------------------------------------ invite viewer
    step = 'invite a viewer';
    log(step);
    await page.getByRole('link', { name: 'Members' }).click();
    await page.getByLabel('Email').fill(viewerEmail);
    await page.getByLabel('Role', { exact: true }).selectOption('viewer');
    await page.getByRole('button', { name: 'Invite' }).click();
    const temporary = page.getByTestId('temporary-password');
    await temporary.waitFor();
    const viewerPassword = (await temporary.innerText()).trim();
    expect(viewerPassword.length >= 10, 'no temporary password was shown');
    await page.getByRole('button', { name: `Deactivate ${viewerEmail}` }).waitFor();
    await shot(page, 'settings-members.png');

    // Phone width, while still an admin.
    step = 'phone width';
    log(step);
    const phone = await browser.newContext({
      viewport: { width: 390, height: 844 },
      deviceScaleFactor: 2,
      isMobile: true,
      hasTouch: true,
      baseURL: BASE,
      storageState: await context.storageState(),
    });
    const phonePage = await phone.newPage();
    await phonePage.goto(sessionUrl);
    await phonePage.getByText('The calculator tool returned: 42').first().waitFor();
    await phonePage.getByRole('button', { name: 'Menu' }).waitFor();
    const overflow = await phonePage.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    expect(overflow <= 1, `the chat page is ${overflow}px wider than a phone screen`);
    await shot(phonePage, 'chat-mobile.png');
    await phone.close();

    // ------------------------------------------------ token refresh, session end
    step = 'silent token refresh';
    log(step);
    const readTokens = () => page.evaluate(() => JSON.parse(localStorage.getItem('paas.auth') || '{}').state?.tokens ?? null);
    const writeTokens = (patch) =>
      page.evaluate((p) => {
        const stored = JSON.parse(localStorage.getItem('paas.auth'));
        Object.assign(stored.state.tokens, p);
        localStorage.setItem('paas.auth', JSON.stringify(stored));
      }, patch);
    const before = await readTokens();
    expect(before?.refreshToken, 'no tokens in localStorage');
    // An access token the server refuses (as an expired one would be).
    await writeTokens({ accessToken: 'not.a.valid-token' });
    await page.goto('/agents');
    await page.getByRole('link', { name: 'Calculator bot' }).waitFor();
    const after = await readTokens();
    expect(after.refreshToken !== before.refreshToken, 'the refresh token was not rotated');
    expect(after.accessToken !== 'not.a.valid-token', 'the access token was not replaced');

    step = 'ended session';
    log(step);
    // Presenting the spent refresh token again revokes the session: the user must log in.
    await writeTokens({ accessToken: 'not.a.valid-token', refreshToken: before.refreshToken });
    await page.goto('/sessions');
    await page.getByRole('heading', { name: 'Log in', exact: true }).waitFor();
    await page.getByText('Your session ended. Please log in again.').waitFor();

    // -------------------------------------------------------- as the viewer
    step = 'log in as the viewer';
    log(step);
    await page.getByLabel('Tenant').fill(tenant);
    await page.getByLabel('Email').fill(viewerEmail);
    await page.getByLabel('Password').fill(viewerPassword);
    await page.getByRole('button', { name: 'Log in' }).click();
    // After an ended session, logging in returns to the page that was open (here /sessions).
    await page.waitForURL('**/sessions');
    await page.getByText('Viewer', { exact: true }).waitFor();
    await page.getByRole('link', { name: 'Chat', exact: true }).click();
    await page.waitForURL('**/chat');

    step = 'viewer cannot create agents or chat';
    log(step);
    expect((await page.getByLabel('Message').count()) === 0, 'a viewer is offered the chat box');
    await page.getByText('Viewers can read their conversations but cannot chat.').waitFor();
    await page.getByRole('link', { name: 'Agents' }).click();
    await page.getByRole('link', { name: 'Calculator bot' }).waitFor();
    expect((await page.getByRole('link', { name: 'New agent' }).count()) === 0, 'a viewer sees "New agent"');
    expect((await page.getByRole('button', { name: /create/i }).count()) === 0, 'a viewer sees a create button');
    expect((await page.getByRole('link', { name: `Edit ${agentName}` }).count()) === 0, 'a viewer sees "Edit"');
    await page.getByRole('link', { name: `View ${agentName}` }).click();
    await page.getByRole('heading', { name: 'Calculator bot', exact: true }).waitFor();
    expect((await page.getByRole('heading', { name: 'Try it', exact: true }).count()) === 0, 'a viewer is offered "Try it"');
    expect((await page.getByRole('button', { name: 'Save changes' }).count()) === 0, 'a viewer can edit the agent');
    expect((await page.getByRole('button', { name: 'Delete agent' }).count()) === 0, 'a viewer can delete the agent');
    await shot(page, 'viewer-agent.png');
    await page.goto('/agents/new');
    await page.getByText('Only admins can create agents.').waitFor();
    expect((await page.getByRole('button', { name: 'Create agent' }).count()) === 0, 'a viewer can open the agent form');
    await page.goto('/settings/members');
    await page.waitForURL('**/settings/profile');
    expect((await page.getByRole('link', { name: 'Members' }).count()) === 0, 'a viewer sees the Members tab');

    step = 'log out';
    log(step);
    await page.getByRole('button', { name: 'Log out' }).click();
    await page.waitForURL('**/login');
    expect((await readTokens()) === null, 'tokens are still stored after logging out');

    expect(consoleErrors.length === 0, `the page threw: ${consoleErrors.join(' | ')}`);
    log('all steps passed');
  } catch (err) {
    const file = resolve(OUTPUT, 'failure.png');
    await page.screenshot({ path: file, fullPage: true }).catch(() => undefined);
    const message = err instanceof Error ? err.message.split('\n').slice(0, 6).join('\n') : String(err);
    throw new E2EError(`step "${step}" failed: ${message}\n(screenshot: ${file}, page: ${page.url()})`);
  } finally {
    await browser.close();
  }
}

run().then(
  () => process.exit(0),
  (err) => {
    console.error(`[e2e] FAILED: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  },
);
