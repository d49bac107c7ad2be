/**
 * The floor of any SOCKS5 server written on node:net: the least a Node process must do per
 * tunnel (accept, read the greeting, answer 05 00, read a CONNECT for an IPv4 address,
 * `net.connect`, answer success, relay with `pipe()` both ways). No validation, no limits, no
 * timeouts, no logging: not a server anyone should run, only the ceiling that socksmith's
 * handshake rate is compared with (docs/performance.md). `node dist/bench/node-floor-server.js`
 * prints `node-floor listening on PORT` (127.0.0.1 only).
 * @packageDocumentation
 */
import net from 'node:net';

const SUCCESS = Buffer.from([0x05, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0]);
const NO_AUTH = Buffer.from([0x05, 0x00]);

const server = net.createServer({ noDelay: true }, (client) => {
  client.on('error', () => client.destroy());
  client.once('data', () => {
    client.write(NO_AUTH);
    client.once('data', (req: Buffer) => {
      // 05 01 00 01 A B C D PH PL (the load generator sends exactly this)
      if (req.length < 10 || req[3] !== 0x01) return void client.destroy();
      client.pause();
      const up = net.connect({ host: `${req[4]}.${req[5]}.${req[6]}.${req[7]}`, port: req.readUInt16BE(8), noDelay: true });
      up.on('error', () => {
        up.destroy();
        client.destroy();
      });
      up.once('connect', () => {
        client.write(SUCCESS);
        client.pipe(up);
        up.pipe(client);
      });
      client.once('close', () => up.destroy());
      up.once('close', () => client.destroy());
    });
  });
});
server.listen(0, '127.0.0.1', () => process.stdout.write(`node-floor listening on ${(server.address() as net.AddressInfo).port}\n`));
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
