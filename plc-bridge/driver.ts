/**
 * The protocol-neutral seam between the connection supervisor (connection.ts) and a field bus
 * client: Modbus TCP today (modbus-driver.ts), OPC UA could follow. A driver is one socket's
 * worth of client: it connects once, and after close() (or losing its socket) it is done; the
 * supervisor makes a fresh one for every reconnect.
 *
 * What a driver promises:
 * - every failure is a PlcError ('connection-refused', 'timeout', 'connection-reset',
 *   'not-connected', 'modbus-exception' with detail.exceptionCode, 'invalid-response');
 * - an answer is only ever taken for the request it belongs to (Modbus TCP: transaction id,
 *   unit id, function code and length checked), so a late answer to an abandoned request can
 *   never complete a later one;
 * - once its socket is gone, every pending request rejects and the onClose listeners run once.
 *
 * Deadlines are not the driver's job: the supervisor races each promise against its own clock
 * and may leave a request unanswered and send the next one on the same socket.
 */
import type { DeviceConfig } from './config.js';
import type { PlcError } from './errors.js';

export type RegisterArea = 'holding' | 'input';
export type BitArea = 'coil' | 'discrete';

export interface Driver {
  /** Rejects PlcError 'connection-refused' (or another connect failure code). */
  connect(): Promise<void>;
  /** Idempotent; destroys the socket and rejects whatever is pending. */
  close(): Promise<void>;
  readonly isOpen: boolean;
  readRegisters(area: RegisterArea, start: number, count: number): Promise<number[]>;
  readBits(area: BitArea, start: number, count: number): Promise<boolean[]>;
  /** FC6 for one register, FC16 for more. */
  writeRegisters(start: number, values: number[]): Promise<void>;
  /** FC5 for one coil, FC15 for more. */
  writeCoils(start: number, values: boolean[]): Promise<void>;
  /** FC22: register = (register AND andMask) OR (orMask AND NOT andMask). */
  maskWriteRegister(address: number, andMask: number, orMask: number): Promise<void>;
  /** Runs once when an open socket is lost (not after close()); returns an unsubscribe. */
  onClose(listener: (reason: PlcError) => void): () => void;
}

export type DriverFactory = (device: DeviceConfig) => Driver;
