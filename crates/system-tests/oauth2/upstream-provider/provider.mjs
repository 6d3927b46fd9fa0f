// An independent OpenID provider (panva's oidc-provider) for the gateway's federation system
// tests: the "other" provider that the gateway signs its users in with.
//
// Environment:
//   ISSUER         the issuer, e.g. http://127.0.0.1:4100 (no trailing slash); the server binds
//                  to its host name and to PORT
//   PORT           the port to listen on
//   CLIENT_ID, CLIENT_SECRET
//                  the one (confidential) client: authorization_code, response_type code,
//                  client_secret_basic at the token endpoint, ID tokens signed with RS256
//   REDIRECT_URI   its redirect URI (several may be given, separated by commas or spaces)
//   optional: ID_TOKEN_CLAIMS=userinfo-only keeps email / email_verified out of the ID token
//   (oidc-provider's default, conformIdTokenClaims: then only the userinfo endpoint has them);
//   by default they are in the ID token too.
//
// Accounts: any login is accepted, with any password, on the provider's built-in development
// sign-in page (form inputs `login` and `password`), followed by its consent page (a form with
// a hidden `prompt=consent` and one submit button). The account id is the login; its claims:
// sub = the login, email = the login if it contains "@", else <login>@upstream.example,
// email_verified = true.
//
// PKCE (S256) is required on every authorization request. Plain http on the loopback works:
// oidc-provider marks its cookies Secure only on https requests.
//
// Stdout gets exactly one line, `listening <ISSUER>`, once the server accepts connections;
// everything else (request log, oidc-provider's notices) goes to stderr. SIGTERM / SIGINT stop it.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import process from 'node:process';

// oidc-provider prints its notices with console.info (stdout): send every console method to
// stderr before it is loaded, so that stdout carries the `listening` line alone.
for (const method of ['log', 'info', 'debug', 'warn']) {
  console[method] = (...args) => console.error(...args);
}

const { default: Provider, errors } = await import('oidc-provider');

function env(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`provider.mjs: environment variable ${name} is not set`);
    process.exit(2);
  }
  return value;
}

const ISSUER = env('ISSUER');
const PORT = Number.parseInt(env('PORT'), 10);
const CLIENT_ID = env('CLIENT_ID');
const CLIENT_SECRET = env('CLIENT_SECRET');
const REDIRECT_URIS = env('REDIRECT_URI').split(/[\s,]+/).filter(Boolean);
const CONFORM_ID_TOKEN_CLAIMS = process.env.ID_TOKEN_CLAIMS === 'userinfo-only';

const issuerUrl = new URL(ISSUER);
if (ISSUER.endsWith('/') || issuerUrl.pathname !== '/' || !Number.isInteger(PORT)) {
  console.error('provider.mjs: ISSUER must be scheme://host:port with no path or trailing slash, PORT a number');
  process.exit(2);
}
const HOST = issuerUrl.hostname.replace(/^\[(.*)\]$/, '$1');

// A fresh RSA signing key each run (RS256), so that nothing secret is kept in the repository.
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = {
  ...privateKey.export({ format: 'jwk' }),
  kid: `rsa-${randomBytes(6).toString('hex')}`,
  use: 'sig',
  alg: 'RS256',
};

function emailOf(accountId) {
  return accountId.includes('@') ? accountId : `${accountId}@upstream.example`;
}

const configuration = {
  clients: [
    {
      client_id: CLIENT_ID,
      client_secret: CLIENT_SECRET,
      redirect_uris: REDIRECT_URIS,
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: 'RS256',
    },
  ],
  jwks: { keys: [signingKey] },
  // Cookie signing keys: random per run (the provider's state lives in memory anyway).
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
  },
  scopes: ['openid', 'email'],
  // true is oidc-provider's default: for response_type=code the ID token then has only the
  // protocol claims and sub, and email / email_verified come from the userinfo endpoint alone.
  conformIdTokenClaims: CONFORM_ID_TOKEN_CLAIMS,
  pkce: { required: () => true },
  features: {
    // The built-in sign-in (any login) and consent pages.
    devInteractions: { enabled: true },
  },
  async findAccount(_ctx, id) {
    return {
      accountId: id,
      async claims() {
        return { sub: id, email: emailOf(id), email_verified: true };
      },
    };
  },
};

const provider = new Provider(ISSUER, configuration);

// The built-in pages import a web font from the internet: the tests reach nothing but this
// machine, so drop that import and let a browser load nothing from elsewhere.
const FONT_IMPORT = /@import url\(https?:[^)]*\);?/g;
provider.use(async (ctx, next) => {
  const started = Date.now();
  try {
    await next();
  } finally {
    if (typeof ctx.body === 'string' && ctx.type === 'text/html') {
      ctx.body = ctx.body.replace(FONT_IMPORT, '');
      ctx.set('Content-Security-Policy', "default-src 'self' 'unsafe-inline'");
    }
    console.error(`${ctx.method} ${ctx.path} -> ${ctx.status} (${Date.now() - started} ms)`);
  }
});

for (const event of ['server_error', 'authorization.error', 'grant.error', 'userinfo.error']) {
  provider.on(event, (...args) => {
    const error = args.find((arg) => arg instanceof Error);
    const detail = error instanceof errors.OIDCProviderError
      ? `${error.error}: ${error.error_description}${error.error_detail ? ` (${error.error_detail})` : ''}`
      : error?.stack ?? String(error);
    console.error(`${event}: ${detail}`);
  });
}

const server = provider.listen(PORT, HOST);

function stop(signal) {
  console.error(`provider.mjs: ${signal}, stopping`);
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));

await once(server, 'listening');
process.stdout.write(`listening ${ISSUER}\n`);
