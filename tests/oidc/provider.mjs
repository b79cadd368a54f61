// A real OpenID provider that is not ours (npm `oidc-provider`), issuing JWT access tokens for
// a resource (RFC 8707) by client credentials. Run by engine/tests/oidc_interop.rs with
// PORT, RESOURCE, TTL (seconds) and ALG (RS256 or ES256).
// With LOGIN_REDIRECT (a web view's callback URL) it also serves the authorization code flow to
// the confidential client `web` (secret `web-secret`), through its own development login and
// consent pages (any login, any password); its access tokens carry GROUPS (comma-separated).
import Provider from 'oidc-provider';
import { generateKeyPairSync } from 'node:crypto';

const port = Number(process.env.PORT);
const issuer = `http://127.0.0.1:${port}`;
const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });

const provider = new Provider(issuer, {
  clients: [{
    client_id: 'interop',
    client_secret: 'interop-secret',
    grant_types: ['client_credentials'],
    redirect_uris: [],
    response_types: [],
    token_endpoint_auth_method: 'client_secret_post',
  }, ...(process.env.LOGIN_REDIRECT ? [{
    client_id: 'web',
    client_secret: 'web-secret',
    application_type: 'native',
    grant_types: ['authorization_code'],
    redirect_uris: [process.env.LOGIN_REDIRECT],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }] : [])],
  extraTokenClaims: () => (process.env.GROUPS ? { groups: process.env.GROUPS.split(',') } : undefined),
  claims: { openid: ['sub'], profile: ['name'], email: ['email'] },
  jwks: { keys: [{ ...rsa, kid: 'rsa-1', use: 'sig', alg: 'RS256' }, { ...ec, kid: 'ec-1', use: 'sig', alg: 'ES256' }] },
  scopes: ['mcp'],
  features: {
    devInteractions: { enabled: Boolean(process.env.LOGIN_REDIRECT) },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => process.env.RESOURCE,
      useGrantedResource: () => true,
      getResourceServerInfo: (_ctx, resourceIndicator) => ({
        scope: 'mcp',
        audience: resourceIndicator,
        accessTokenTTL: Number(process.env.TTL || 300),
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: process.env.ALG || 'RS256' } },
      }),
    },
  },
});

provider.listen(port, '127.0.0.1', () => console.log(`ready ${issuer}`));
