/**
 * socksmith's configuration for `npx socksmith` in this folder. Every key is documented in
 * docs/config.md; each plugin's options in plugins/<name>/README.md.
 */
import { defineConfig } from 'socksmith';

export default defineConfig({
  // Loopback only. Any other address makes the proxy reachable by other hosts (see docs/config.md).
  listen: [{ host: '127.0.0.1', port: 1080 }],

  // How streams leave the proxy. To run in front of Tor's SocksPort instead (and turn
  // 'extended-errors' on below; README "In front of Tor" says why pipelining stays off):
  //   upstream: { type: 'socks5', host: '127.0.0.1', port: 9050 },
  upstream: { type: 'direct' },

  // The six Tor extensions. true / false, or an options object.
  plugins: {
    isolation: true,
    resolve: true,
    'resolve-ptr': true,
    'http-detect': true,
    'optimistic-data': true,
    'extended-errors': false,
  },
});
