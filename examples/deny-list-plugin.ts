/**
 * A policy plugin: refuse streams to listed hosts and ports with REP 02 ("connection not allowed
 * by ruleset"; SOCKS4 clients get 5B), before any upstream connection or DNS lookup.
 *
 * Load it with `plugins: { 'deny-list': { module: './deny-list-plugin.ts', options } }`.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import {
  type Kernel,
  type Logger,
  Rep,
  type ResolvedConfig,
  type SocksmithPlugin,
  Stage,
  Tokens,
  classifyHost,
  formatAddress,
  inject,
  injectable,
  normalizeName,
} from 'socksmith';

const PLUGIN_NAME = 'deny-list';

/** Options after validation (defaults filled in from the schema). */
export interface DenyListOptions {
  readonly hosts: readonly string[];
  readonly ports: readonly number[];
  readonly file?: string;
}

@injectable()
export default class DenyListPlugin implements SocksmithPlugin {
  static readonly meta = {
    name: PLUGIN_NAME,
    description: 'Refuse streams to listed hosts and ports with REP 02.',
    schema: {
      type: 'object',
      additionalProperties: false,
      properties: {
        hosts: {
          type: 'array',
          items: { type: 'string', minLength: 1 },
          default: [],
          description: 'Hosts to refuse: a name (also matches its subdomains) or an IP literal.',
        },
        ports: {
          type: 'array',
          items: { type: 'integer', minimum: 1, maximum: 65535 },
          default: [],
          description: 'Destination ports to refuse, whatever the host.',
        },
        file: {
          type: 'string',
          minLength: 1,
          description: 'A file with one more host per line (# starts a comment), read at start; relative to the config file.',
        },
      },
    },
  };

  private readonly names = new Set<string>();
  private readonly addresses = new Set<string>();
  private readonly ports: ReadonlySet<number>;

  // The constructor only stores: no I/O here (that is start()'s job).
  constructor(
    @inject(Tokens.PluginOptions) private readonly options: DenyListOptions,
    @inject(Tokens.Config) private readonly config: ResolvedConfig,
    @inject(Tokens.Logger) private readonly log: Logger,
  ) {
    for (const h of options.hosts) this.add(h);
    this.ports = new Set(options.ports);
  }

  /** `Example.COM.` is stored as `example.com`; IP literals in canonical form (`[::1]` → `::1`). */
  private add(host: string): void {
    const a = classifyHost(host, 0);
    if (a.kind === 'domain') this.names.add(normalizeName(a.host));
    else this.addresses.add(a.host);
  }

  /** True if `port` is listed, or `host` is, or (for a name) one of its parent domains is. */
  denied(host: string, port: number): boolean {
    if (this.ports.has(port)) return true;
    const a = classifyHost(host, 0);
    if (a.kind !== 'domain') return this.addresses.has(a.host);
    // a.b.example → b.example → example
    for (let name = normalizeName(a.host); ; name = name.slice(name.indexOf('.') + 1)) {
      if (this.names.has(name)) return true;
      if (!name.includes('.')) return false;
    }
  }

  apply(kernel: Kernel): void {
    // POLICY runs after CLASSIFY/REWRITE (so conn.destination is final) and before ANSWER
    // (so RESOLVE of a listed name is refused too).
    kernel.hooks.onRequest.tapPromise({ name: PLUGIN_NAME, stage: Stage.POLICY }, async (conn, request) => {
      const dest = conn.destination ?? request.destination;
      if (!this.denied(dest.host, dest.port)) return undefined;
      conn.log.info({ destination: formatAddress(dest) }, 'deny-list: refused');
      return { rep: Rep.NOT_ALLOWED };
    });
  }

  async start(): Promise<void> {
    if (!this.options.file) return;
    const file = path.resolve(this.config.source.dir, this.options.file);
    const lines = (await readFile(file, 'utf8')).split('\n');
    for (const line of lines) {
      const host = line.replace(/#.*/, '').trim();
      if (host) this.add(host);
    }
    this.log.info({ file, hosts: this.names.size + this.addresses.size }, 'deny-list loaded');
  }
}
