/**
 * The Modbus driver keeps nothing per request once it is answered or failed: modbus-serial files
 * each request by transaction id and never removes it, and with our 16-bit ids that map grew
 * to 65,536 entries per device (bench/plc-bench.ts saw RSS grow by 600 MB/min).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { silentLogger } from '../../lib/log.js';
import { PlcSim } from '../../demo/plc-sim.js';
import { ModbusDriver } from '../../plc-bridge/modbus-driver.js';
import type { DeviceConfig } from '../../plc-bridge/config.js';

test('no request stays in modbus-serial\'s transaction map after it is answered or has failed', async () => {
  const sim = new PlcSim({ port: 0, size: 1000 });
  const port = await sim.start();
  const device: DeviceConfig = { name: 'mem', host: '127.0.0.1', port, unitId: 1, timeoutMs: 300, connectTimeoutMs: 1000, addressing: 0, maxGap: 0, maxTimeouts: 3, skipAfterFailures: 100, skipMs: 1000, groups: [] };
  const driver = new ModbusDriver(device, { logger: silentLogger() });
  try {
    await driver.connect();
    for (let i = 0; i < 600; i++) await driver.readRegisters('holding', 0, 10);
    await assert.rejects(driver.readRegisters('holding', 990, 20), { code: 'modbus-exception' });
    const map = (driver as unknown as { client: { _transactions: Record<number, unknown> } }).client._transactions;
    assert.equal(Object.keys(map).length, 0, `requests left behind: ${Object.keys(map).length}`);
  } finally {
    await driver.close();
    await sim.stop();
  }
});
