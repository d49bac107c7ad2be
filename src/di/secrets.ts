/**
 * The per-process secret store (`Tokens.SecretStore`): one random secret per process, which a
 * plugin can use to key hashes that must stay stable across reloads. A cluster worker seeds it with
 * the primary's secret before it builds its proxy, so every worker derives the same values.
 * @packageDocumentation
 */
import { randomBytes } from 'node:crypto';

/** The service behind `Tokens.SecretStore`. */
export interface SecretStore {
  /** The process's secret: the seeded one, else 32 random bytes created on first use and kept for the process's life. */
  processSecret(): Buffer;
}

let secret: Buffer | undefined;

/** The default {@link SecretStore}: process-wide, so a reload (a new proxy generation) keeps the same secret. */
export class ProcessSecretStore implements SecretStore {
  /**
   * Set the process's secret, for every proxy built afterwards (reloads included). A cluster
   * worker calls it with the primary's 32 bytes. At least 16 bytes.
   */
  static seed(value: Uint8Array): void {
    if (value.length < 16) throw new RangeError('the process secret must have at least 16 bytes');
    secret = Buffer.from(value);
  }

  processSecret(): Buffer {
    secret ??= randomBytes(32);
    return secret;
  }
}
