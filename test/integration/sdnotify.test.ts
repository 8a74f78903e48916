/**
 * sd_notify over a real unix datagram socket: lib/sdnotify.ts's SdNotify against the test
 * receiver, and the receiver against systemd's own `systemd-notify`, so both ends are checked
 * against the real protocol rather than only against each other.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { SdNotify } from '../../lib/sdnotify.js';
import { silentLogger } from '../../lib/log.js';
import { notifySocket, type NotifySocket } from '../helpers/notify-socket.js';

const execFileAsync = promisify(execFile);
const sockets: NotifySocket[] = [];
after(() => sockets.forEach((s) => s.close()));

function receiver(): NotifySocket {
  const s = notifySocket();
  sockets.push(s);
  return s;
}

test('SdNotify delivers READY=1, then a multi-line datagram, in order', async () => {
  const sock = receiver();
  const notifier = new SdNotify({ socketPath: sock.path, logger: silentLogger() });
  try {
    assert.equal(notifier.enabled, true);
    notifier.notify('READY=1');
    notifier.notify('STATUS=connected\nWATCHDOG=1');
    await sock.waitFor('WATCHDOG=1');
    assert.deepEqual(sock.messages, ['READY=1', 'STATUS=connected\nWATCHDOG=1']);
    assert.equal(sock.has('STATUS=connected'), true);
    assert.equal(sock.has('STOPPING=1'), false);
  } finally {
    notifier.close();
  }
});

test('SdNotify without a socket path is disabled and sends nothing', async () => {
  const sock = receiver();
  const notifier = new SdNotify({ socketPath: undefined, logger: silentLogger() });
  notifier.notify('READY=1');
  notifier.close();
  assert.equal(notifier.enabled, false);
  // A datagram sent now still arrives; had the disabled notifier sent one, it would come first.
  const probe = new SdNotify({ socketPath: sock.path, logger: silentLogger() });
  probe.notify('X_PROBE=1');
  probe.close();
  await sock.waitFor('X_PROBE=1');
  assert.deepEqual(sock.messages, ['X_PROBE=1']);
});

test("the receiver understands systemd's own systemd-notify", async () => {
  const sock = receiver();
  // --no-block: without it systemd-notify waits for a barrier reply that only systemd sends.
  await execFileAsync('systemd-notify', ['--no-block', '--ready', '--status=from systemd-notify'], {
    env: { ...process.env, ...sock.env },
  }).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') throw new Error('systemd-notify not found: install systemd (apt-get install systemd)', { cause: err });
    throw err;
  });
  await sock.waitFor('READY=1');
  assert.equal(sock.has('STATUS=from systemd-notify'), true);
});
