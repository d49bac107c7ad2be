/**
 * Named stages that order taps on a hook (lower runs first), like webpack's
 * `Compilation.PROCESS_ASSETS_STAGE_*`. Use these instead of bare numbers:
 * `hooks.onRequest.tapPromise({ name: 'my-plugin', stage: Stage.POLICY }, fn)`.
 * @packageDocumentation
 */
export const Stage = Object.freeze({
  /** Access control on who the client is (ACLs); runs before anything else. */
  ACCESS: -300,
  /** Authentication decisions (checking credentials). */
  AUTH: -200,
  /** Computing facts about the stream (isolation key, derived credentials). */
  CLASSIFY: -100,
  /** Rewriting the destination (address maps). */
  REWRITE: -50,
  /** Default stage for taps that do not say. */
  DEFAULT: 0,
  /** Destination policy (refusals). */
  POLICY: 100,
  /** Answering a request in place of an upstream connection (RESOLVE, RESOLVE_PTR, bad .onion). */
  ANSWER: 200,
  /** Observing only (logging, metrics); must not change the outcome. */
  OBSERVE: 1000,
} as const);

/** One of the {@link Stage} values. */
export type StageValue = (typeof Stage)[keyof typeof Stage];
