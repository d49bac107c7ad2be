/**
 * The reference Node SOCKS5 server of issue 4's memory target: the `socksv5` npm package (no
 * auth, accepts every CONNECT), run as `node dist/bench/socksv5-server.js DIR` where DIR holds
 * `node_modules/socksv5` (`npm run bench` installs it into bench/.build/peers, outside the
 * project's dependencies). Prints `socksv5 listening on PORT` (127.0.0.1 only).
 * @packageDocumentation
 */
import { createRequire } from 'node:module';
import path from 'node:path';

interface Socksv5Server {
  useAuth(auth: unknown): void;
  listen(port: number, host: string, cb: () => void): void;
  address(): { port: number };
}

interface Socksv5 {
  createServer(handler: (info: unknown, accept: () => void, deny: () => void) => void): Socksv5Server;
  auth: { None(): unknown };
}

const dir = process.argv[2];
if (!dir) {
  process.stderr.write('usage: node dist/bench/socksv5-server.js DIR_WITH_NODE_MODULES\n');
  process.exit(64);
}
const require = createRequire(path.join(path.resolve(dir), 'package.json'));
const socks = require('socksv5') as Socksv5;
const srv = socks.createServer((_info, accept) => accept());
srv.useAuth(socks.auth.None());
srv.listen(0, '127.0.0.1', () => process.stdout.write(`socksv5 listening on ${srv.address().port}\n`));
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
