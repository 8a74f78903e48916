/**
 * Signed trust updates end to end (docs/trust-updates.md) with a real agent and Mosquitto: the
 * anchors of update bundles change only through an update signed by a code-signing key that
 * chains to a current anchor; one from another CA, a replayed (stale) one and one that would leave
 * no anchor are refused with the file unchanged; an anchor is retired while another remains; each
 * attempt is in the audit trail. `edge-agent bundle verify` then follows the new anchors.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import { startBroker, type Broker } from '../helpers/broker.js';
import { mqttClient, tempDir } from '../helpers/util.js';
import { agentConnected, runCli, startAgent, type AgentProcess } from '../helpers/agent.js';
import { wmsFor, type Wms } from '../helpers/config-apply.js';
import { createCa, issueCert } from '../../certs/devca.js';
import { makeTrustUpdate } from '../../certs/trust-update.js';
import type { AuditEntry } from '../../core/audit.js';

const GW = 'gw-trust';
let broker: Broker;
let client: MqttClient;
let wms: Wms;
let agent: AgentProcess;
const dir = tempDir('trust-it-');
const anchorsPath = join(dir, 'trust.pem');

before(async () => {
  broker = await startBroker();
  client = await mqttClient(broker.url);
  wms = await wmsFor(client, GW);
});

after(async () => {
  await agent?.stop().catch(() => undefined);
  await client.endAsync();
  await broker.stop();
});

test('trust anchors change only through a signed trust update; the last anchor is never retired; stale and foreign updates are refused', async () => {
  const ca1 = createCa({ commonName: 'anchor one' });
  const ca2 = createCa({ commonName: 'anchor two' });
  const rogue = createCa({ commonName: 'not an anchor' });
  const signer1 = issueCert(ca1, { commonName: 'release signer 1', kind: 'codeSigning' });
  const signerRogue = issueCert(rogue, { commonName: 'rogue signer', kind: 'codeSigning' });
  writeFileSync(anchorsPath, ca1.certPem);
  agent = startAgent({ dataDir: join(dir, 'data'), gatewayId: GW, config: { mqtt: { url: broker.url }, ota: { trustAnchors: anchorsPath } } });
  await agentConnected(agent, 20_000);
  let n = 0;
  const update = async (u: unknown): Promise<{ status: string; reason?: { code: string }; result?: Record<string, unknown> }> => {
    const id = `trust-${++n}`;
    await wms.send('trust', id, { action: 'update', update: u });
    return (await wms.outcome(id));
  };
  const sign = (anchorsPem: string, sequence: number, s = signer1): unknown => makeTrustUpdate({ anchorsPem, sequence, keyPem: s.keyPem, signerPem: s.certPem });

  const add = await update(sign(ca1.certPem + ca2.certPem, 1));
  assert.equal(add.status, 'successful', JSON.stringify(add));
  assert.equal((add.result?.added as string[]).length, 1);
  assert.equal(readFileSync(anchorsPath, 'utf8'), ca1.certPem + ca2.certPem);

  const foreign = await update(sign(rogue.certPem, 2, signerRogue));
  assert.equal(foreign.reason?.code, 'signer-untrusted');
  const replay = await update(sign(ca1.certPem + ca2.certPem, 1));
  assert.equal(replay.reason?.code, 'trust-update-stale');
  const none = await update(sign('', 2));
  assert.equal(none.reason?.code, 'trust-last-anchor');
  const forged = sign(ca1.certPem + rogue.certPem, 2) as { manifest: string };
  const tampered = { ...forged, manifest: Buffer.from(JSON.stringify({ kind: 'trust-update', sequence: 2, anchors: rogue.certPem })).toString('base64') };
  assert.equal((await update(tampered)).reason?.code, 'signature-invalid');
  assert.equal(readFileSync(anchorsPath, 'utf8'), ca1.certPem + ca2.certPem, 'nothing changed');

  // Retire anchor one, signed by a key under anchor one (still current): anchor two remains.
  const retire = await update(sign(ca2.certPem, 2));
  assert.equal(retire.status, 'successful', JSON.stringify(retire));
  assert.equal((retire.result?.removed as string[]).length, 1);
  assert.equal(readFileSync(anchorsPath, 'utf8'), ca2.certPem);
  // Anchor one is gone: its signers can change nothing more.
  assert.equal((await update(sign(ca1.certPem, 3))).reason?.code, 'signer-untrusted');

  await wms.send('trust', 'trust-status', { action: 'status' });
  const st = await wms.outcome('trust-status');
  assert.equal(st.result?.sequence, 2);
  assert.equal((st.result?.anchors as { subject: string }[])[0]?.subject, 'CN=anchor two');

  const r = await runCli(['audit', '--json', '--config', agent.configPath]);
  const entries = (JSON.parse(r.stdout) as AuditEntry[]).filter((e) => e.action === 'trust-update').map((e) => e.outcome);
  assert.deepEqual(entries, ['installed', 'refused/signer-untrusted', 'refused/trust-update-stale', 'refused/trust-last-anchor', 'refused/signature-invalid', 'installed', 'refused/signer-untrusted']);
});
