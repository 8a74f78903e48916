/**
 * The web console's serving and security against the real agent (a child process), a real
 * Mosquitto and the real CLI (CONTRACT.md section 8, docs/console.md): 401 without a session,
 * 421 for a foreign Host, 403 for a foreign Origin, a missing CSRF token and a viewer's operator
 * action; pairing codes single-use, wrong ones refused then rate-limited; the cookie's
 * attributes; revocation; the stream's snapshot, resume and Origin check; commands through the
 * router with the session as the audit actor; a non-loopback listen without TLS refused at start.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { startBroker, type Broker } from '../helpers/broker.js';
import { tempDir, waitFor } from '../helpers/util.js';
import { agentReady, runCli, startAgent, type AgentProcess } from '../helpers/agent.js';
import { http, pairCode, pairSession } from '../helpers/console.js';

describe('web console: serving and security', () => {
  let broker: Broker;
  let agent: AgentProcess;
  let base = '';
  let origin = '';

  before(async () => {
    broker = await startBroker();
    agent = startAgent({ dataDir: join(tempDir('console-sec-'), 'data'), gatewayId: 'gw-console', config: { mqtt: { url: broker.url }, console: { listen: '127.0.0.1:0' } } });
    await agentReady(agent, 20_000);
    base = new URL((await pairCode(agent.configPath)).url).origin + '/';
    origin = base.replace(/\/$/, '');
  });

  after(async () => {
    await agent?.stop();
    await broker?.stop();
  });

  test('the pages are served with a CSP without inline script; the API needs a session (401)', async () => {
    const page = await http(base, '/');
    assert.equal(page.status, 200);
    assert.match(page.body, /<script type="module" src="\/app.js">/);
    const csp = String(page.headers['content-security-policy']);
    assert.match(csp, /script-src 'self'/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
    assert.equal((await http(base, '/app.js')).status, 200);
    assert.equal((await http(base, '/vendor/uPlot.esm.js')).status, 200);
    // No path from the request reaches the file system.
    for (const p of ['/../package.json', '/%2e%2e/package.json', '/dom.ts', '/etc/passwd', '/console/server.js']) assert.equal((await http(base, p)).status, 404, p);
    const r = await http(base, '/api/session');
    assert.equal(r.status, 401);
    assert.equal(r.json().error, 'no-session');
    assert.equal((await http(base, '/api/stream')).status, 401);
    assert.equal((await http(base, '/api/data/logs')).status, 401);
  });

  test('a foreign Host is refused with 421, with or without a session', async () => {
    const s = await pairSession(base, (await pairCode(agent.configPath)).code);
    for (const host of ['evil.example', 'evil.example:80', `attacker.test:${new URL(base).port}`]) {
      const r = await http(base, '/api/session', { headers: { Host: host, Cookie: s.cookie } });
      assert.equal(r.status, 421, host);
      assert.equal(r.json().error, 'wrong-host');
      assert.equal((await http(base, '/', { headers: { Host: host } })).status, 421);
    }
    assert.equal((await http(base, '/api/session', { headers: { Host: `localhost:${new URL(base).port}`, Cookie: s.cookie } })).status, 200);
  });

  test('pairing: the cookie is HttpOnly and SameSite=Strict; a code works once; wrong codes are refused, then rate-limited', async () => {
    const p = await pairCode(agent.configPath, 'operator');
    assert.equal(p.role, 'operator');
    assert.match(p.url, /^http:\/\/127\.0\.0\.1:\d+\/#pair=[A-Z2-9]{10}$/);
    assert.ok(Date.parse(p.expiresAt) - Date.now() > 9 * 60_000 && Date.parse(p.expiresAt) - Date.now() <= 10 * 60_000);
    const s = await pairSession(base, p.code);
    assert.match(s.setCookie, /HttpOnly/);
    assert.match(s.setCookie, /SameSite=Strict/);
    assert.doesNotMatch(s.setCookie, /Secure/);
    assert.equal(s.cookie.split('=')[1]?.length, 43, 'a 256-bit id, base64url');
    const me = await http(base, '/api/session', { headers: { Cookie: s.cookie } });
    assert.equal(me.json().role, 'operator');
    // Used once: the same code again is a wrong code.
    const again = await http(base, '/api/pair', { method: 'POST', headers: { Origin: origin }, body: JSON.stringify({ code: p.code }) });
    assert.equal(again.status, 401);
    assert.equal(again.json().error, 'wrong-code');
    // A pairing POST from another origin never reaches the code check.
    assert.equal((await http(base, '/api/pair', { method: 'POST', headers: { Origin: 'http://evil.example' }, body: JSON.stringify({ code: p.code }) })).status, 403);
    // The guesser comes from 127.0.0.2: the limit is per client, the other tests pair from 127.0.0.1.
    const localAddress = '127.0.0.2';
    let limited = 0;
    for (let i = 0; i < 6; i++) {
      const r = await http(base, '/api/pair', { method: 'POST', localAddress, headers: { Origin: origin }, body: JSON.stringify({ code: `WRONG${i}` }) });
      if (r.status === 429) limited++;
      else assert.equal(r.status, 401);
    }
    assert.ok(limited >= 1, 'the sixth wrong code within a minute is rate-limited');
    // While limited, even the right code is refused: guessing cannot go on.
    const good = await pairCode(agent.configPath);
    const r = await http(base, '/api/pair', { method: 'POST', localAddress, headers: { Origin: origin }, body: JSON.stringify({ code: good.code }) });
    assert.equal(r.status, 429);
    assert.equal(r.json().error, 'rate-limited');
    assert.match(agent.logText(), /console pairing refused/);
  });

  test('state-changing requests need the exact Origin and the CSRF token; a viewer cannot act (403)', async () => {
    const op = await pairSession(base, (await pairCode(agent.configPath, 'operator')).code);
    const viewer = await pairSession(base, (await pairCode(agent.configPath, 'viewer')).code);
    const body = JSON.stringify({ op: 'restart', params: { component: 'no-such-component' } });
    const post = (headers: Record<string, string>): ReturnType<typeof http> => http(base, '/api/command', { method: 'POST', headers: { 'Content-Type': 'application/json', ...headers }, body });
    assert.equal((await post({ Cookie: op.cookie, 'X-CSRF-Token': op.csrf })).json().error, 'foreign-origin', 'no Origin');
    for (const o of ['http://evil.example', 'null', `${origin}.evil.example`, origin.replace('127.0.0.1', 'localhost')]) {
      const r = await post({ Cookie: op.cookie, 'X-CSRF-Token': op.csrf, Origin: o });
      assert.equal(r.status, 403, o);
      assert.equal(r.json().error, 'foreign-origin');
    }
    // A cross-site HTML form: text/plain or urlencoded, no custom header, foreign Origin.
    const form = await http(base, '/api/command', { method: 'POST', headers: { Cookie: op.cookie, Origin: 'http://evil.example', 'Content-Type': 'application/x-www-form-urlencoded' }, body: 'op=restart' });
    assert.equal(form.status, 403);
    const noToken = await post({ Cookie: op.cookie, Origin: origin });
    assert.equal(noToken.status, 403);
    assert.equal(noToken.json().error, 'csrf');
    assert.equal((await post({ Cookie: op.cookie, Origin: origin, 'X-CSRF-Token': viewer.csrf })).json().error, 'csrf', "another session's token");
    const v = await post({ Cookie: viewer.cookie, Origin: origin, 'X-CSRF-Token': viewer.csrf });
    assert.equal(v.status, 403);
    assert.equal(v.json().error, 'forbidden');
    assert.equal((await post({ Origin: origin, 'X-CSRF-Token': op.csrf })).status, 401, 'no cookie');

    // The operator's command goes through the router: the same lifecycle and codes as the WMS's.
    const ok = await post({ Cookie: op.cookie, Origin: origin, 'X-CSRF-Token': op.csrf });
    assert.equal(ok.status, 202);
    const id = String(ok.json().id);
    assert.match(id, /^console-/);
    let last: { status?: string; reason?: { code?: string } } | null = null;
    await waitFor(
      async () => {
        last = (await agent.admin('command-status', { id })) as typeof last;
        return last !== null && ['failed', 'rejected', 'successful'].includes(String(last.status));
      },
      { timeoutMs: 10_000, what: `a terminal status for ${id}` },
    );
    assert.notEqual((last as { status?: string } | null)?.status, 'successful', 'no such component');
    // ... and the audit trail names the console session.
    await waitFor(
      async () => {
        const a = await runCli(['audit', '--json', '--config', agent.configPath]);
        return a.stdout.includes(`"console:${op.label}"`) && a.stdout.includes('"restart"');
      },
      { timeoutMs: 10_000, what: 'the audit entry with the console actor' },
    );
  });

  test('the stream: a snapshot on connect, resume by Last-Event-ID, Origin checked', async () => {
    const s = await pairSession(base, (await pairCode(agent.configPath)).code);
    const first = await http(base, '/api/stream', { headers: { Cookie: s.cookie }, firstBytes: true });
    assert.equal(first.status, 200);
    assert.match(String(first.headers['content-type']), /text\/event-stream/);
    const m = /id: ([0-9a-f]{8}-\d+)\nevent: snapshot\ndata: (.*)\n/.exec(first.body);
    assert.ok(m, first.body);
    const snap = JSON.parse(m[2]!) as { status: { pid: number; version: string } };
    assert.equal(snap.status.pid, agent.pid);
    // Resuming from a known id replays what came after it (status events come every 2 s while a browser listens).
    const listener = http(base, '/api/stream', { headers: { Cookie: s.cookie }, firstBytes: false }).catch(() => undefined);
    await new Promise((r) => setTimeout(r, 2500));
    const resumed = await http(base, '/api/stream', { headers: { Cookie: s.cookie, 'Last-Event-ID': m[1]! }, firstBytes: true });
    assert.match(resumed.body, /event: status\n/);
    assert.doesNotMatch(resumed.body, /event: snapshot/);
    // An id from another process's epoch gets a snapshot.
    const other = await http(base, '/api/stream', { headers: { Cookie: s.cookie, 'Last-Event-ID': '00000000-5' }, firstBytes: true });
    assert.match(other.body, /event: snapshot/);
    const foreign = await http(base, '/api/stream', { headers: { Cookie: s.cookie, Origin: 'http://evil.example' } });
    assert.equal(foreign.status, 403);
    const site = await http(base, '/api/stream', { headers: { Cookie: s.cookie, 'Sec-Fetch-Site': 'cross-site' } });
    assert.equal(site.status, 403);
    void listener;
  });

  test('edge-agent console sessions lists and revokes; a revoked session gets 401', async () => {
    const s = await pairSession(base, (await pairCode(agent.configPath)).code);
    const list = await runCli(['console', 'sessions', '--json', '--config', agent.configPath]);
    assert.equal(list.code, 0, list.stderr);
    const sessions = (JSON.parse(list.stdout) as { sessions: { label: string; role: string }[] }).sessions;
    assert.ok(sessions.some((x) => x.label === s.label));
    assert.doesNotMatch(list.stdout, new RegExp(s.cookie.split('=')[1]!), 'the id itself is never shown');
    const rev = await runCli(['console', 'sessions', '--revoke', s.label, '--config', agent.configPath]);
    assert.equal(rev.code, 0, rev.stderr);
    assert.match(rev.stdout, /revoked 1 session/);
    assert.equal((await http(base, '/api/session', { headers: { Cookie: s.cookie } })).status, 401);
    const none = await runCli(['console', 'sessions', '--revoke', 's-00000000', '--config', agent.configPath]);
    assert.equal(none.code, 1);
  });
});

describe('web console: configuration', () => {
  test('a non-loopback listen without TLS refuses to start, saying why', async () => {
    const a = startAgent({ dataDir: join(tempDir('console-cfg-'), 'data'), config: { mqtt: { url: 'mqtt://127.0.0.1:1' }, console: { listen: '0.0.0.0:0' } } });
    const exit = await a.exited;
    assert.equal(exit.code, 78);
    assert.match(a.logText(), /console\.tls.*non-loopback address needs console\.tls/s);
  });

  test('console.enabled false: nothing listens and pairing says the console is disabled', async () => {
    const broker = await startBroker();
    const a = startAgent({ dataDir: join(tempDir('console-off-'), 'data'), config: { mqtt: { url: broker.url }, console: { enabled: false, listen: '127.0.0.1:0' } } });
    try {
      await agentReady(a, 20_000);
      const r = await runCli(['console', 'pair', '--config', a.configPath]);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /console-disabled|disabled/);
      assert.doesNotMatch(a.logText(), /console listening/);
    } finally {
      await a.stop();
      await broker.stop();
    }
  });
});
