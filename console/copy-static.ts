/**
 * Build step (package.json `build`): copies the console's static files (console/web/static/:
 * the page shell, the style sheet, the vendored uPlot 1.6.32 dist files) next to the pages tsc
 * compiled into dist/console/web/, where server.ts serves them from its fixed list (a release is
 * package.json + dist/).
 */
import { copyFileSync, mkdirSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const out = join(dirname(fileURLToPath(import.meta.url)), 'web');
const src = join(out, '..', '..', '..', 'console', 'web', 'static');
for (const sub of ['', 'vendor']) {
  mkdirSync(join(out, sub), { recursive: true });
  for (const e of readdirSync(join(src, sub), { withFileTypes: true })) if (e.isFile()) copyFileSync(join(src, sub, e.name), join(out, sub, e.name));
}
