/**
 * Build step (package.json `build`): copies the procedures that ship with the release,
 * maintenance/procedures/*.yaml, to dist/maintenance/procedures/, where the catalog finds them
 * (a release is package.json + dist/). Mode 0644 in a 0755 directory, whatever the umask: the
 * catalog refuses procedures others may write.
 */
import { chmodSync, copyFileSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const out = join(dirname(fileURLToPath(import.meta.url)), 'procedures');
const src = join(out, '..', '..', '..', 'maintenance', 'procedures');
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
chmodSync(out, 0o755);
for (const name of readdirSync(src).filter((n) => n.endsWith('.yaml'))) {
  copyFileSync(join(src, name), join(out, name));
  chmodSync(join(out, name), 0o644);
}
