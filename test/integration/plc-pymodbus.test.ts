/**
 * The Modbus driver (plc-bridge/modbus-driver.ts) black-box against an independent server:
 * Debian's python3-pymodbus 3.0.0 (test/helpers/pymodbus.ts). Every function code the bridge
 * uses (1, 2, 3, 4, 5, 6, 15, 16, 22: pymodbus 3.0.0's server decoder has MaskWriteRegister) and
 * an exception for an illegal address; then the same server through the DeviceConnection.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { silentLogger } from '../../lib/log.js';
import type { DeviceConfig } from '../../plc-bridge/config.js';
import { DeviceConnection } from '../../plc-bridge/connection.js';
import { PlcError } from '../../plc-bridge/errors.js';
import { ModbusDriver } from '../../plc-bridge/modbus-driver.js';
import { startPymodbus, type PymodbusServer } from '../helpers/pymodbus.js';
import { waitFor } from '../helpers/util.js';

const HOLDING = Array.from({ length: 130 }, (_, i) => (i * 257 + 1) & 0xffff);
const INPUT = [11, 22, 33, 44, 55, 0xffff];
const COILS = [true, false, true, true, false, false, false, true, true];
const DISCRETE = [false, true, false, false, true];

let server: PymodbusServer;
let driver: ModbusDriver;

function device(port: number): DeviceConfig {
  return { name: 'py', host: '127.0.0.1', port, unitId: 1, timeoutMs: 3000, connectTimeoutMs: 3000, addressing: 0, maxGap: 0, maxTimeouts: 3, skipAfterFailures: 5, skipMs: 1000, groups: [] };
}

before(async () => {
  server = await startPymodbus({ init: { holding: HOLDING, input: INPUT, coils: COILS, discrete: DISCRETE }, size: 200 });
  driver = new ModbusDriver(device(server.port));
  await driver.connect();
});

after(async () => {
  await driver?.close();
  await server?.stop();
});

test('reads holding and input registers (FC3, FC4), up to 125 at once', async () => {
  assert.deepEqual(await driver.readRegisters('holding', 0, 5), HOLDING.slice(0, 5));
  assert.deepEqual(await driver.readRegisters('holding', 3, 125), HOLDING.slice(3, 128));
  assert.deepEqual(await driver.readRegisters('input', 0, 6), INPUT);
});

test('reads coils and discrete inputs (FC1, FC2), trimmed to the count asked', async () => {
  assert.deepEqual(await driver.readBits('coil', 0, 9), COILS);
  assert.deepEqual(await driver.readBits('coil', 2, 3), COILS.slice(2, 5));
  assert.deepEqual(await driver.readBits('discrete', 0, 5), DISCRETE);
});

test('writes one register (FC6) and several (FC16)', async () => {
  await driver.writeRegisters(150, [0xbeef]);
  await driver.writeRegisters(151, [1, 2, 65535]);
  assert.deepEqual(await driver.readRegisters('holding', 150, 4), [0xbeef, 1, 2, 65535]);
});

test('writes one coil (FC5) and several (FC15)', async () => {
  await driver.writeCoils(160, [true]);
  await driver.writeCoils(161, [false, true, true, false, true, true, true, true, false, true]);
  assert.deepEqual(await driver.readBits('coil', 160, 11), [true, false, true, true, false, true, true, true, true, false, true]);
  await driver.writeCoils(160, [false]);
  assert.deepEqual(await driver.readBits('coil', 160, 1), [false]);
});

test('mask write (FC22) sets and clears bits, leaving the others', async () => {
  await driver.writeRegisters(170, [0b1010_0000_1111_0000]);
  // Clear bit 4, set bit 0: AND keeps every bit but 0 and 4, OR brings bit 0.
  await driver.maskWriteRegister(170, 0xffff & ~0b1_0001, 0b1);
  assert.deepEqual(await driver.readRegisters('holding', 170, 1), [0b1010_0000_1110_0001]);
});

test('an illegal address answers modbus-exception with exception code 2', async () => {
  await assert.rejects(driver.readRegisters('holding', 199, 5), (e: unknown) => e instanceof PlcError && e.code === 'modbus-exception' && e.detail?.exceptionCode === 2);
  await assert.rejects(driver.writeRegisters(250, [1]), (e: unknown) => e instanceof PlcError && e.detail?.exceptionCode === 2);
  await assert.rejects(driver.readBits('discrete', 300, 1), (e: unknown) => e instanceof PlcError && e.detail?.exceptionCode === 2);
  assert.deepEqual(await driver.readRegisters('input', 1, 2), INPUT.slice(1, 3), 'the socket stays usable after an exception');
});

test('the DeviceConnection reads and writes through the Modbus driver', async () => {
  const conn = new DeviceConnection({ device: device(server.port), logger: silentLogger() });
  try {
    conn.start();
    await waitFor(() => conn.link === 'up', { timeoutMs: 10_000, what: 'link up to pymodbus' });
    assert.deepEqual(await conn.read('input', 0, 3), INPUT.slice(0, 3));
    await conn.write({ kind: 'registers', start: 180, values: [7, 8] });
    await conn.write({ kind: 'coils', start: 180, values: [true] });
    await conn.write({ kind: 'mask', address: 180, andMask: 0, orMask: 0x55 });
    assert.deepEqual(await conn.read('holding', 180, 2), [0x55, 8]);
    assert.deepEqual(await conn.read('coil', 180, 1), [true]);
    assert.equal(conn.stats().requests, 6);
  } finally {
    await conn.stop();
  }
});
