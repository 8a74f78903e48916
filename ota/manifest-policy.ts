/**
 * Whether this device may install a (valid, verified) manifest (CONTRACT.md section 4).
 *
 * Checked in this order, first failure wins: product, device class, `requires`, securityVersion,
 * version. securityVersion comes before the version so that an operator is not told to retry
 * with allowDowngrade when that could never help: the anti-rollback floor holds whatever the
 * command says.
 *
 * Decisions:
 *  - `requires` is matched with prereleases included: the running version is a fact about the
 *    device, not a choice to opt into prereleases, so 1.5.0-rc.1 satisfies ">=1.0.0 <2.0.0".
 *  - "greater" is semver precedence; the same version again is a downgrade (reinstalling needs
 *    allowDowngrade).
 *  - an installed version that is not semver cannot be compared: only allowDowngrade lets an
 *    update through; a running version that is not semver satisfies no `requires`.
 * Pure; no I/O.
 */
import semver from 'semver';
import { OtaError } from './errors.js';
import type { Manifest } from './manifest.js';

export interface DeviceFacts {
  /** What `compatible` must name, e.g. wms-gateway. */
  deviceClass: string;
  /** The version running now (matched against `requires`). */
  runningVersion: string;
  /** The committed version the update replaces (the update must be greater). */
  installedVersion: string;
  /** The highest securityVersion the device has ever committed. */
  highestSecurityVersion: number;
}

export interface PolicyOptions {
  allowDowngrade?: boolean;
}

export function checkPolicy(m: Manifest, device: DeviceFacts, opts: PolicyOptions = {}): void {
  if (m.product !== 'edge-agent') throw new OtaError('product-mismatch', `the bundle is for product ${JSON.stringify(m.product)}, not edge-agent`);
  if (!m.compatible.includes(device.deviceClass)) {
    throw new OtaError('incompatible', `the bundle is compatible with ${m.compatible.join(', ')}, not this device's class ${device.deviceClass}`);
  }
  if (m.requires !== undefined && !(semver.valid(device.runningVersion) && semver.satisfies(device.runningVersion, m.requires, { includePrerelease: true }))) {
    throw new OtaError('requires-unmet', `the bundle requires a running version in ${JSON.stringify(m.requires)}; this device runs ${device.runningVersion}`);
  }
  if (m.securityVersion < device.highestSecurityVersion) {
    throw new OtaError(
      'security-version',
      `the bundle's securityVersion ${m.securityVersion} is lower than ${device.highestSecurityVersion}, the highest this device has committed; allowDowngrade does not override this`,
    );
  }
  if (opts.allowDowngrade === true) return;
  if (!semver.valid(device.installedVersion)) {
    throw new OtaError('downgrade', `the installed version ${JSON.stringify(device.installedVersion)} is not a semantic version, so ${m.version} cannot be shown to be newer; use allowDowngrade`);
  }
  if (!semver.gt(m.version, device.installedVersion)) {
    throw new OtaError('downgrade', `the bundle's version ${m.version} is not greater than the installed ${device.installedVersion}; use allowDowngrade to install it anyway`);
  }
}
