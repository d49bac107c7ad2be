/**
 * Options of the `auth` plugin.
 * @packageDocumentation
 */
import { Type, type Static } from '@sinclair/typebox';

/** JSON schema of the auth options. */
export const AuthOptionsSchema = Type.Object(
  {
    usersFile: Type.String({
      minLength: 1,
      description: 'Users file (one `username:$scrypt$…[:socks4]` line per user; see plugins/auth/README.md), relative to the config file. Required.',
    }),
    socks4: Type.Union([Type.Literal('reject'), Type.Literal('userid')], {
      default: 'reject',
      description:
        "SOCKS4 has no password. 'reject': every SOCKS4/4a request gets 5B. 'userid': accept a USERID naming a user flagged socks4 in the users file (weak: the name alone lets a client in).",
    }),
    http: Type.Boolean({
      default: true,
      description: "With http-detect in tunnel mode: accept HTTP CONNECT with 'Proxy-Authorization: Basic base64(user:pass)' checked against the same users. false: refuse every HTTP CONNECT.",
    }),
    reloadInterval: Type.Integer({
      minimum: 0,
      maximum: 86_400_000,
      default: 5000,
      description:
        'The users file is watched (fs.watch) and reloaded on change; in addition its size, mtime and inode are checked every this many ms, for file systems where watching misses changes. 0: watch only.',
    }),
  },
  { additionalProperties: false, description: 'Require SOCKS5 username/password (and optionally a SOCKS4 USERID) from a users file with scrypt hashes.' },
);

/** Auth options after defaults. */
export type AuthOptions = Static<typeof AuthOptionsSchema>;
