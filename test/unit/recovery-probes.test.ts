/**
 * The watchdog's liveness probes on real local sockets (heartbeat over lib/rpc.ts, tcp, http),
 * each bounded by its timeout; the masking of secrets in an incident's log lines; the
 * `--since` durations of `edge-agent incidents`.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer as createHttpServer } from 'node:http';
import { createServer as createTcpServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { silentLogger } from '../../lib/log.js';
import { RpcServer } from '../../lib/rpc.js';
import { heartbeatProbe, httpProbe, tcpProbe } from '../../recovery/probes.js';
import { redactLine, tailText } from '../../recovery/log-tail.js';
import { parseDuration } from '../../agent/cli/incidents.js';
import { tempDir } from '../helpers/util.js';

const closers: (() => Promise<void> | void)[] = [];
after(async () => {
  for (const c of closers) await c();
});

test('heartbeat: ok with the pid the component reports; a silent or absent socket fails within the timeout', async () => {
  const dir = tempDir('probe');
  const sock = join(dir, 'hb.sock');
  const server = new RpcServer({ path: sock, logger: silentLogger(), methods: { ping: () => ({ pid: 4242 }) } });
  await server.start();
  closers.push(() => server.stop());
  assert.deepEqual(await heartbeatProbe(sock, 1000), { ok: true, pid: 4242 });
  const absent = await heartbeatProbe(join(dir, 'none.sock'), 1000);
  assert.equal(absent.ok, false);
  // Accepts and never answers: what a stopped process looks like.
  const silentPath = join(dir, 'silent.sock');
  const silent = createTcpServer(() => undefined).listen(silentPath);
  closers.push(() => void silent.close());
  await new Promise((r) => silent.once('listening', r));
  const t0 = Date.now();
  const r = await heartbeatProbe(silentPath, 300);
  assert.equal(r.ok, false);
  assert.match(r.detail ?? '', /within 300 ms/);
  assert.ok(Date.now() - t0 < 3000, 'bounded by its timeout');
});

test('tcp: a listening port passes, a closed one fails', async () => {
  const srv = createTcpServer((s) => s.destroy()).listen(0, '127.0.0.1');
  await new Promise((r) => srv.once('listening', r));
  closers.push(() => void srv.close());
  const port = (srv.address() as AddressInfo).port;
  assert.equal((await tcpProbe('127.0.0.1', port, 1000)).ok, true);
  srv.close();
  await new Promise((r) => setTimeout(r, 50));
  assert.equal((await tcpProbe('127.0.0.1', port, 1000)).ok, false);
});

test('http: a status below 500 passes, 5xx and no answer fail', async () => {
  let status = 204;
  let answer = true;
  const srv = createHttpServer((_req, res) => {
    if (!answer) return;
    res.statusCode = status;
    res.end();
  }).listen(0, '127.0.0.1');
  await new Promise((r) => srv.once('listening', r));
  closers.push(() => void srv.closeAllConnections());
  closers.push(() => void srv.close());
  const url = `http://127.0.0.1:${(srv.address() as AddressInfo).port}/healthz`;
  assert.equal((await httpProbe(url, 1000)).ok, true);
  status = 404;
  assert.equal((await httpProbe(url, 1000)).ok, true, 'alive, even if the path is wrong');
  status = 503;
  assert.deepEqual(await httpProbe(url, 1000), { ok: false, detail: `GET ${url}: status 503` });
  answer = false;
  assert.match((await httpProbe(url, 300)).detail ?? '', /no answer within 300 ms/);
});

test('incident log lines: secrets masked, lines bounded', () => {
  assert.equal(redactLine('login with password=hunter2 token: abc,x'), 'login with password=[redacted] token: [redacted],x');
  assert.equal(redactLine('{"password":"a b","user":"u"}'), '{"password":[redacted],"user":"u"}');
  assert.equal(redactLine('Authorization: Bearer abc.def rest'), 'Authorization: [redacted] rest');
  assert.equal(redactLine('broker mqtt://gw:pw@host:1883'), 'broker mqtt://[redacted]@host:1883');
  assert.ok(redactLine('x'.repeat(5000)).length <= 503);
  assert.deepEqual(tailText('a\n\nb\nc\n', 2), ['b', 'c']);
});

test('incidents --since: durations', () => {
  assert.equal(parseDuration('90m'), 90 * 60_000);
  assert.equal(parseDuration('24h'), 86_400_000);
  assert.equal(parseDuration('7d'), 7 * 86_400_000);
  assert.equal(parseDuration('30s'), 30_000);
  assert.equal(parseDuration('1w'), undefined);
  assert.equal(parseDuration('h'), undefined);
});
