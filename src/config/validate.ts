/**
 * JSON-schema validation with ajv, and error messages that fit on one line and name the key.
 *
 * Validators are compiled once per schema and cached (never per connection). Validation fills in
 * `default` values (ajv `useDefaults`) on a copy, never on the caller's object.
 * @packageDocumentation
 */
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { ConfigError } from '../errors.js';

const ajv = new Ajv({ allErrors: true, strict: true, useDefaults: true, verbose: true, allowUnionTypes: true });
const compiled = new WeakMap<object, ValidateFunction>();

function validatorFor(schema: object): ValidateFunction {
  let v = compiled.get(schema);
  if (!v) {
    v = ajv.compile(schema);
    compiled.set(schema, v);
  }
  return v;
}

/** Join a dotted key path: `join('plugins.isolation', 'foo')` → `plugins.isolation.foo`. */
export function joinKey(prefix: string, key: string): string {
  if (!prefix) return key;
  if (!key) return prefix;
  return `${prefix}.${key}`;
}

function pathOf(prefix: string, instancePath: string): string {
  const parts = instancePath
    .split('/')
    .slice(1)
    .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
  return parts.reduce(joinKey, prefix);
}

function describe(schema: unknown): string {
  const d = (schema as { description?: unknown } | undefined)?.description;
  return typeof d === 'string' ? ` (${d})` : '';
}

/** Levenshtein distance, for "did you mean" hints on misspelled keys. */
function distance(a: string, b: string): number {
  const dp = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = dp[0]!;
    dp[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = dp[j]!;
      dp[j] = Math.min(dp[j]! + 1, dp[j - 1]! + 1, prev + (a[i - 1]!.toLowerCase() === b[j - 1]!.toLowerCase() ? 0 : 1));
      prev = tmp;
    }
  }
  return dp[b.length]!;
}

/** The closest of `candidates` to `word`, if it is close enough to be a likely typo. */
export function suggest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    const d = distance(word, c);
    if (d < bestD) {
      best = c;
      bestD = d;
    }
  }
  return best !== undefined && bestD <= Math.max(2, Math.floor(word.length / 3)) ? best : undefined;
}

/** Turn one ajv error into a {@link ConfigError} naming the full key path. */
export function toConfigError(err: ErrorObject, prefix: string): ConfigError {
  const path = pathOf(prefix, err.instancePath);
  switch (err.keyword) {
    case 'additionalProperties': {
      const key = String((err.params as { additionalProperty: string }).additionalProperty);
      const allowed = Object.keys((err.parentSchema as { properties?: object } | undefined)?.properties ?? {}).filter((k) => k !== '$schema');
      const hint = suggest(key, allowed);
      const tail = hint ? ` (did you mean "${hint}"?` + ` allowed: ${allowed.join(', ')})` : allowed.length ? ` (allowed: ${allowed.join(', ')})` : '';
      return new ConfigError(joinKey(path, key), `unknown key${tail}`);
    }
    case 'required': {
      const key = String((err.params as { missingProperty: string }).missingProperty);
      const prop = (err.parentSchema as { properties?: Record<string, unknown> } | undefined)?.properties?.[key];
      return new ConfigError(joinKey(path, key), `required key is missing${describe(prop)}`);
    }
    case 'type':
      return new ConfigError(path, `must be ${(err.params as { type: string }).type}${describe(err.parentSchema)}`);
    case 'const':
      return new ConfigError(path, `must be ${JSON.stringify((err.params as { allowedValue: unknown }).allowedValue)}${describe(err.parentSchema)}`);
    case 'enum':
      return new ConfigError(path, `must be one of ${((err.params as { allowedValues: unknown[] }).allowedValues).map((v) => JSON.stringify(v)).join(', ')}`);
    case 'anyOf': {
      // A numeric branch names its range (`integer 1-1024`): `workers: 0` is an integer, only out of range.
      const range = (b: { minimum?: unknown; maximum?: unknown }): string =>
        b.minimum !== undefined && b.maximum !== undefined ? ` ${String(b.minimum)}-${String(b.maximum)}` : b.minimum !== undefined ? ` >= ${String(b.minimum)}` : b.maximum !== undefined ? ` <= ${String(b.maximum)}` : '';
      const branches = ((err.schema as Array<{ const?: unknown; type?: unknown; minimum?: unknown; maximum?: unknown }>) ?? []).map((b) =>
        b.const !== undefined ? JSON.stringify(b.const) : `${String(b.type ?? 'value')}${range(b)}`,
      );
      return new ConfigError(path, `must be one of: ${branches.join(', ')}${describe(err.parentSchema)}`);
    }
    default:
      return new ConfigError(path, `${err.message ?? 'is invalid'}${describe(err.parentSchema)}`);
  }
}

/** The sub-schema a `required` error's `schemaPath` (`#/properties/upstream/required`) points into. */
function schemaAt(root: object, schemaPath: string): object | undefined {
  const parts = schemaPath.replace(/^#\/?/, '').split('/').slice(0, -1);
  let node: unknown = root;
  for (const p of parts) node = (node as Record<string, unknown> | undefined)?.[p.replace(/~1/g, '/').replace(/~0/g, '~')];
  return typeof node === 'object' && node !== null ? node : undefined;
}

/** An additionalProperties error for the first key of the object at `instancePath` that `schema` does not allow. */
function unknownKeyError(schema: object | undefined, data: unknown, instancePath: string): ErrorObject | undefined {
  const s = schema as { properties?: Record<string, unknown>; additionalProperties?: unknown } | undefined;
  if (!s?.properties || s.additionalProperties !== false) return undefined;
  let obj: unknown = data;
  for (const p of instancePath.split('/').slice(1)) obj = (obj as Record<string, unknown> | undefined)?.[p.replace(/~1/g, '/').replace(/~0/g, '~')];
  if (typeof obj !== 'object' || obj === null) return undefined;
  const extra = Object.keys(obj).find((k) => !(k in s.properties!));
  if (extra === undefined) return undefined;
  return {
    keyword: 'additionalProperties',
    instancePath,
    schemaPath: '',
    params: { additionalProperty: extra },
    parentSchema: s as never,
    message: 'must NOT have additional properties',
  } as ErrorObject;
}

/** Where an error points: the key it names (an unknown or missing key included). */
function effectivePath(e: ErrorObject): string {
  if (e.keyword === 'additionalProperties') return `${e.instancePath}/${String((e.params as { additionalProperty: string }).additionalProperty)}`;
  if (e.keyword === 'required') return `${e.instancePath}/${String((e.params as { missingProperty: string }).missingProperty)}`;
  return e.instancePath;
}

/** True when one path is the other or inside it. */
function related(a: string, b: string): boolean {
  return a === b || a.startsWith(`${b}/`) || b.startsWith(`${a}/`);
}

/**
 * The errors worth reporting, one per mistake, in ajv's (document) order. With unions ajv
 * reports one error per branch, then the union's own anyOf error: of errors about the same key
 * (one path inside the other) the deepest is kept, and at that path the anyOf error, which names
 * every allowed value. A missing required key next to an unknown key that looks like it is the
 * same typo: the unknown key is kept (it names the typo and suggests the right key).
 */
function selectErrors(schema: object, errors: readonly ErrorObject[], data: unknown): ErrorObject[] {
  let remaining = errors.filter((e) => {
    if (e.keyword !== 'required') return true;
    const missing = String((e.params as { missingProperty: string }).missingProperty);
    return !errors.some(
      (o) => o.keyword === 'additionalProperties' && o.instancePath === e.instancePath && suggest(String((o.params as { additionalProperty: string }).additionalProperty), [missing]) === missing,
    );
  });
  const chosen: ErrorObject[] = [];
  for (let round = 0; remaining.length > 0 && round < 100; round++) {
    const deepest = Math.max(...remaining.map((e) => e.instancePath.length));
    const atDeepest = remaining.filter((e) => e.instancePath.length === deepest);
    let best = atDeepest.find((e) => e.keyword === 'anyOf') ?? atDeepest[0]!;
    const bestPath = effectivePath(best);
    remaining = remaining.filter((e) => !related(effectivePath(e), bestPath) && !(e.keyword === 'anyOf' && related(e.instancePath, best.instancePath)));
    if (best.keyword === 'required') best = unknownKeyError(schemaAt(schema, best.schemaPath), data, best.instancePath) ?? best;
    chosen.push(best);
  }
  return chosen.sort((a, b) => errors.indexOf(a) - errors.indexOf(b));
}

/**
 * Validate `value` against `schema` and return every problem (one {@link ConfigError} per
 * mistake, each naming `prefix` + its key) with the copy ajv filled defaults into.
 */
export function validateAll<T>(schema: object, value: unknown, prefix: string): { value: T; errors: ConfigError[] } {
  const copy = value === undefined ? undefined : structuredCloneConfig(value);
  const v = validatorFor(schema);
  if (v(copy)) return { value: copy as T, errors: [] };
  const errors = selectErrors(schema, v.errors ?? [], copy).map((e) => toConfigError(e, prefix));
  return { value: copy as T, errors: errors.length ? errors : [new ConfigError(prefix, 'is invalid')] };
}

/**
 * Validate `value` against `schema`. Returns a deep copy with defaults filled in; throws a
 * {@link ConfigError} whose message names `prefix` + the failing key (every failing key, one per
 * line, with `errors` listing them, when there are several).
 */
export function validate<T>(schema: object, value: unknown, prefix: string): T {
  const r = validateAll<T>(schema, value, prefix);
  if (r.errors.length > 0) throw ConfigError.all(r.errors);
  return r.value;
}

/**
 * Deep-copy plain config data. Functions, class instances and symbols are kept by reference (a
 * TypeScript config may hold them in places the schema types as unknown).
 */
export function structuredCloneConfig<T>(value: T): T {
  if (Array.isArray(value)) return value.map((v) => structuredCloneConfig(v)) as T;
  if (value !== null && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = structuredCloneConfig(v);
    return out as T;
  }
  return value;
}

/** Recursively freeze plain objects and arrays. */
export function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    const proto = Object.getPrototypeOf(value);
    if (Array.isArray(value) || proto === Object.prototype || proto === null) {
      Object.freeze(value);
      for (const v of Object.values(value as object)) deepFreeze(v);
    }
  }
  return value;
}
