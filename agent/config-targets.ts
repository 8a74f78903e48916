/**
 * The two configuration files the `config` operation edits (agent/ops/config.ts): the agent's own
 * and the PLC bridge's. Each target reads its file, validates a candidate with the same code its
 * process uses at start, and says which keys may not be changed remotely. The operation owns
 * the writes and the activation.
 */
import { readFileSync } from 'node:fs';
import { stringify } from 'yaml';
import { configSchema, GATEWAY_ID, parseConfigText, type AgentConfig } from '../core/config.js';
import { parseBridgeConfig, parseBridgeConfigText } from '../plc-bridge/config.js';
import { configHash, isDoc, schemaProblems, type Doc, type Problem } from '../core/config-edit.js';
import { errorMessage } from '../lib/errors.js';

export type TargetName = 'agent' | 'plc-bridge';

export interface ConfigTarget {
  name: TargetName;
  /** The file; undefined when the process runs without one (nothing to edit). */
  path: string | undefined;
  /** The document and its hash, as on disk now. */
  read(): { bytes: Buffer; hash: string; doc: Doc };
  /** Every problem of a candidate document. */
  problems(doc: Doc, current: Doc): Problem[];
  serialize(doc: Doc): string;
}

function readDoc(path: string, parse: (text: string) => unknown): { bytes: Buffer; hash: string; doc: Doc } {
  const bytes = readFileSync(path);
  const raw = parse(bytes.toString('utf8'));
  return { bytes, hash: configHash(bytes), doc: isDoc(raw) ? raw : {} };
}

/** Keys whose change would move the agent's own state away from under the command (or its topics). */
const FIXED = ['gatewayId', 'dataDir', 'admin'] as const;

function fixedProblems(doc: Doc, current: Doc, keys: readonly string[]): Problem[] {
  return keys.filter((k) => JSON.stringify(doc[k]) !== JSON.stringify(current[k])).map((k) => ({ path: k, message: 'cannot be changed remotely (the agent\'s identity and state are there): change it on the gateway' }));
}

export function agentTarget(path: string | undefined, running: AgentConfig): ConfigTarget {
  return {
    name: 'agent',
    path,
    read: () => readDoc(path!, (t) => parseConfigText(t, path!)),
    problems: (doc, current) => {
      // gatewayId falls back to the host name at load: the running one stands in, as at start.
      const withId = { ...doc, gatewayId: doc.gatewayId ?? running.gatewayId };
      const out = schemaProblems(configSchema, withId);
      if (typeof withId.gatewayId === 'string' && !GATEWAY_ID.test(withId.gatewayId)) return out;
      return [...out, ...fixedProblems(doc, current, FIXED)];
    },
    serialize: (doc) => stringify(doc),
  };
}

/** `path: message` as the bridge lists its problems, back into a Problem. */
function splitProblem(s: string): Problem {
  const i = s.indexOf(': ');
  return i < 0 ? { path: '(top level)', message: s } : { path: s.slice(0, i), message: s.slice(i + 2) };
}

export function bridgeTarget(path: string | undefined): ConfigTarget {
  return {
    name: 'plc-bridge',
    path,
    read: () => readDoc(path!, (t) => parseBridgeConfigText(t, path!)),
    problems: (doc, current) => {
      try {
        parseBridgeConfig(doc);
      } catch (err) {
        const problems = (err as { detail?: { problems?: unknown } }).detail?.problems;
        const list = Array.isArray(problems) ? problems.map((p) => splitProblem(String(p))) : [{ path: '(top level)', message: errorMessage(err) }];
        return [...list, ...fixedProblems(doc, current, ['gatewayId', 'dataDir'])];
      }
      return fixedProblems(doc, current, ['gatewayId', 'dataDir']);
    },
    serialize: (doc) => stringify(doc),
  };
}
