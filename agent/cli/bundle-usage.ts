/** The `bundle` subcommand's options and help, apart from its code so that `--help` and the
 * command table do not load the bundle reader and writer (and `tar`) at every start. */
import type { ParseArgsConfig } from 'node:util';

export const BUNDLE_OPTIONS: NonNullable<ParseArgsConfig['options']> = {
  in: { type: 'string' },
  version: { type: 'string' },
  compatible: { type: 'string', multiple: true },
  key: { type: 'string' },
  cert: { type: 'string' },
  output: { type: 'string', short: 'o' },
  requires: { type: 'string' },
  'security-version': { type: 'string' },
  gzip: { type: 'boolean' },
  'delta-from': { type: 'string' },
  base: { type: 'string' },
  trust: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
};

export const BUNDLE_USAGE = `edge-agent bundle <create|verify|inspect> ...

  edge-agent bundle create --in DIR --version V --compatible C --key KEY --cert PEM -o FILE
                           [--requires RANGE] [--security-version N] [--gzip] [--delta-from OLD]
    Makes a format 1 bundle of DIR (files with their modes, directories, symlinks that stay
    inside DIR), signs manifest.json with KEY and writes FILE atomically.
      --compatible C         a device class; repeat it or separate classes with commas
      --cert PEM             the signer's certificate, then any intermediates
      --requires RANGE       semver range the running version must satisfy, e.g. ">=1.0.0 <2.0.0"
      --security-version N   anti-rollback level (default 0)
      --gzip                 gzip-compress the archive
      --delta-from OLD       make a delta bundle against the release OLD (its bundle, or a release
                             directory with .edge-agent-bundle/manifest.json): files unchanged
                             since OLD are listed "source": "base" and left out of the payload;
                             a device installs it only when it runs exactly that release

  edge-agent bundle verify FILE --trust PEM [--base DIR] [--json]
    Checks everything a device checks before installing, without extracting: the archive's
    safety, the signature chain up to the trust anchors in PEM, every size and hash. Exit 0 and
    a summary when all holds; exit 1 and "code: message" on stderr otherwise. A delta's files
    taken from its base are checked only with --base DIR (the base release's directory).

  edge-agent bundle inspect FILE [--json]
    Prints the manifest and the signer's certificates WITHOUT verifying anything (reads only the
    first three members). Use verify before trusting what it shows.

  -h, --help   this help`;
