import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { OtaError, type OtaCode } from '../../ota/errors.js';
import { checkPolicy, parseManifest, type DeviceFacts, type Manifest, type PolicyOptions } from '../../ota/manifest.js';

function manifest(patch: Record<string, unknown> = {}): Manifest {
  const doc = {
    format: 1,
    product: 'edge-agent',
    version: '1.4.0',
    compatible: ['wms-gateway', 'wms-gateway-lite'],
    requires: '>=1.0.0 <2.0.0',
    securityVersion: 3,
    created: '2026-11-22T10:00:00Z',
    files: [{ path: 'app/main.js', sha256: 'ab'.repeat(32), size: 1 }],
    ...patch,
  };
  return parseManifest(Buffer.from(JSON.stringify(doc)));
}

const DEVICE: DeviceFacts = { deviceClass: 'wms-gateway', runningVersion: '1.3.0', installedVersion: '1.3.0', highestSecurityVersion: 3 };

function rejects(m: Manifest, device: Partial<DeviceFacts>, code: OtaCode, opts: PolicyOptions = {}, message?: RegExp): void {
  assert.throws(
    () => checkPolicy(m, { ...DEVICE, ...device }, opts),
    (err) => {
      assert.ok(err instanceof OtaError, String(err));
      assert.equal(err.code, code, err.message);
      if (message) assert.match(err.message, message);
      return true;
    },
  );
}

describe('checkPolicy', () => {
  test('an upgrade for this class, within requires, at the same securityVersion passes', () => {
    checkPolicy(manifest(), DEVICE);
    checkPolicy(manifest(), { ...DEVICE, deviceClass: 'wms-gateway-lite', highestSecurityVersion: 0 });
    checkPolicy(manifest({ requires: undefined, securityVersion: undefined }), { ...DEVICE, runningVersion: '0.1.0', highestSecurityVersion: 0 });
  });

  test('another product: product-mismatch', () => rejects(manifest({ product: 'plc-firmware' }), {}, 'product-mismatch', {}, /plc-firmware/));

  test('a device class the bundle does not name: incompatible', () => rejects(manifest(), { deviceClass: 'other-gateway' }, 'incompatible', {}, /other-gateway/));

  test('a running version outside requires: requires-unmet', () => {
    rejects(manifest(), { runningVersion: '0.9.9' }, 'requires-unmet', {}, /0\.9\.9/);
    rejects(manifest(), { runningVersion: '2.0.0' }, 'requires-unmet');
    rejects(manifest(), { runningVersion: 'unknown' }, 'requires-unmet');
    // allowDowngrade is about the version, not about requires
    rejects(manifest(), { runningVersion: '0.9.9' }, 'requires-unmet', { allowDowngrade: true });
  });

  test('a prerelease running version satisfies a range it lies in', () => {
    checkPolicy(manifest(), { ...DEVICE, runningVersion: '1.3.0-rc.1' });
  });

  test('the same or an older version: downgrade, unless allowDowngrade', () => {
    rejects(manifest(), { installedVersion: '1.4.0' }, 'downgrade', {}, /not greater than the installed 1\.4\.0/);
    rejects(manifest(), { installedVersion: '1.10.0' }, 'downgrade');
    rejects(manifest({ version: '1.4.0-rc.1' }), { installedVersion: '1.4.0' }, 'downgrade');
    checkPolicy(manifest(), { ...DEVICE, installedVersion: '1.10.0' }, { allowDowngrade: true });
    checkPolicy(manifest(), { ...DEVICE, installedVersion: '1.4.0' }, { allowDowngrade: true });
  });

  test('an installed version that is not semver needs allowDowngrade', () => {
    rejects(manifest(), { installedVersion: 'factory' }, 'downgrade', {}, /not a semantic version/);
    checkPolicy(manifest(), { ...DEVICE, installedVersion: 'factory' }, { allowDowngrade: true });
  });

  test('a securityVersion below the highest committed: security-version, whatever allowDowngrade says', () => {
    rejects(manifest({ securityVersion: 2 }), {}, 'security-version', {}, /2 is lower than 3/);
    rejects(manifest({ securityVersion: 2 }), {}, 'security-version', { allowDowngrade: true });
    rejects(manifest({ securityVersion: undefined }), { highestSecurityVersion: 1 }, 'security-version');
    checkPolicy(manifest({ securityVersion: 4 }), DEVICE);
  });

  test('a downgrade below the security floor reports security-version, which allowDowngrade cannot fix', () => {
    rejects(manifest({ version: '1.0.0', securityVersion: 1 }), { installedVersion: '1.3.0' }, 'security-version');
  });
});
