/** Build step: records when dist/ was built (diag uses it as the earliest sane clock value). */
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const dist = join(dirname(fileURLToPath(import.meta.url)), '..');
writeFileSync(join(dist, 'build-info.json'), JSON.stringify({ builtAt: new Date().toISOString() }) + '\n');
