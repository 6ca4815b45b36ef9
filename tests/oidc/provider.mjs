// The real OpenID provider (npm `oidc-provider`) for tests/e2e/oidc.rs.
//
//   node provider.mjs <port> <keys.json> [rotate]
//
// Serves issuer http://127.0.0.1:<port> (http is allowed outside
// NODE_ENV=production, and loopback only) with:
// - one confidential client, `ws-client` / `ws-client-secret`, for the
//   client-credentials grant (client_secret_basic or client_secret_post);
// - resources (RFC 8707 resource indicators), each its own `aud`:
//   `urn:tower-ws-auth:jwt` and `urn:tower-ws-auth:other` get JWT access
//   tokens (RFC 9068, RS256), `urn:tower-ws-auth:opaque` and
//   `urn:tower-ws-auth:other-opaque` opaque ones (only opaque tokens are
//   introspectable here: oidc-provider answers `active: false` for its JWT
//   access tokens); scopes `chat:read chat:write`;
// - introspection (RFC 7662) and revocation (RFC 7009) enabled.
//
// Signing keys live in <keys.json> (private JWKs, the first one signs).
// Key rotation is a restart with `rotate`: a new RSA key is generated and
// put first, the old ones stay published in the JWKS, as a provider keeps
// a retired key until the tokens it signed have expired. Without the file,
// one key is generated. The line `listening <issuer>` says it is ready;
// each introspection request prints `introspection request`.
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import Provider, { errors } from 'oidc-provider';

const [port, keysFile, mode] = process.argv.slice(2);
const issuer = `http://127.0.0.1:${port}`;

function newKey() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid: randomUUID(), alg: 'RS256', use: 'sig' };
}

let keys = existsSync(keysFile) ? JSON.parse(readFileSync(keysFile, 'utf8')) : [];
if (keys.length === 0 || mode === 'rotate') {
  keys = [newKey(), ...keys];
  writeFileSync(keysFile, JSON.stringify(keys));
}

const resources = {
  'urn:tower-ws-auth:jwt': 'jwt',
  'urn:tower-ws-auth:opaque': 'opaque',
  'urn:tower-ws-auth:other': 'jwt',
  'urn:tower-ws-auth:other-opaque': 'opaque',
};

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: 'ws-client',
      client_secret: 'ws-client-secret',
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
      scope: 'chat:read chat:write',
      token_endpoint_auth_method: 'client_secret_basic',
    },
    {
      client_id: 'ws-server',
      client_secret: 'ws-server-secret',
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
      token_endpoint_auth_method: 'client_secret_post',
    },
  ],
  jwks: { keys },
  cookies: { keys: ['tower-ws-auth-test-only-cookie-key'] },
  scopes: ['chat:read', 'chat:write'],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => 'urn:tower-ws-auth:opaque',
      useGrantedResource: () => true,
      getResourceServerInfo: (_ctx, resource) => {
        const format = resources[resource];
        if (!format) throw new errors.InvalidTarget();
        return {
          scope: 'chat:read chat:write',
          audience: resource,
          accessTokenTTL: 300,
          accessTokenFormat: format,
          ...(format === 'jwt' ? { jwt: { sign: { alg: 'RS256' } } } : {}),
        };
      },
    },
  },
});

// One line per introspection request: the tests count them (single flight).
provider.use(async (ctx, next) => {
  if (ctx.method === 'POST' && ctx.path === '/token/introspection') console.log('introspection request');
  await next();
});

const server = createServer(provider.callback());
server.listen(Number(port), '127.0.0.1', () => {
  console.log(`listening ${issuer}`);
});
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => process.exit(0));
