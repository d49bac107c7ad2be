/**
 * Spread streams over two SOCKS5 servers in turn (e.g. two Tor instances) with the custom
 * upstream in round-robin-upstream.ts. Run from the repository root:
 *   npx socksmith --config examples/proxy.config.round-robin.ts
 */
import { type ModuleUpstreamConfig, defineConfig } from 'socksmith';

// Typed on its own so that tsc checks `module` and `options` too.
const upstream: ModuleUpstreamConfig = {
  type: 'module',
  module: './round-robin-upstream.ts', // relative to this file
  options: {
    upstreams: [
      { host: '127.0.0.1', port: 9050 },
      { host: '127.0.0.1', port: 9150 },
    ],
  },
};

export default defineConfig({
  listen: [{ host: '127.0.0.1', port: 1080 }],
  upstream,
});
