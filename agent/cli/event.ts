import { adminRequest } from '../../core/admin.js';
import { cliContext, fail } from './context.js';

export async function eventCommand(v: Record<string, string | boolean | undefined>): Promise<number> {
  try {
    const ctx = cliContext(v);
    if (typeof v.code !== 'string' || typeof v.message !== 'string') {
      process.stderr.write('edge-agent event: --code and --message are required (see --help)\n');
      return 64;
    }
    const params: Record<string, unknown> = { code: v.code, message: v.message };
    if (typeof v.severity === 'string') params.severity = v.severity;
    await adminRequest(ctx.socket, 'event', params);
    process.stdout.write('queued\n');
    return 0;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ECONNREFUSED') {
      process.stderr.write('edge-agent event: the daemon is not running (no admin socket); start it with `edge-agent run`\n');
      return 3;
    }
    return fail('edge-agent event', err);
  }
}
