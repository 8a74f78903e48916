/**
 * Typed errors with stable codes. The code is what the WMS sees in `reason.code` and what
 * the CLI prints; every code a domain can raise is listed in that domain's code table and in
 * docs/errors.md (test/unit/error-codes.test.ts fails when one is missing from the docs).
 */
export class EdgeError<C extends string = string> extends Error {
  readonly code: C;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: C, message: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.details = options?.details;
  }

  toReason(): { code: C; message: string } {
    return { code: this.code, message: this.message };
  }
}

/** Every code table registered here is checked against docs/errors.md. */
export const ERROR_CODE_TABLES: Record<string, readonly string[]> = {};

export function registerCodes<const T extends readonly string[]>(domain: string, codes: T): T {
  ERROR_CODE_TABLES[domain] = codes;
  return codes;
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** The stable code of a typed error, or undefined for anything else. */
export function errorCode(err: unknown): string | undefined {
  return err instanceof EdgeError ? (err as EdgeError<string>).code : undefined;
}
