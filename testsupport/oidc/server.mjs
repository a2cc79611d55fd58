// A real OpenID provider (node-oidc-provider) for meetbot's OAuth tests, over HTTPS on 127.0.0.1.
// Started by testsupport/src/oidc.rs with one JSON argument:
//   {cert, key, clients: [{client_id, client_secret, redirect_uris, scope}], scopes, access_ttl}
// Prints one JSON line {"issuer": "https://127.0.0.1:PORT"} when listening; exits when stdin closes.
// Interactions are answered at once (no login form): the account is the `login_hint`, or "alice";
// login_hint "decline" answers access_denied, as a user pressing "Cancel" would. An account
// `<tag>/<address>` is another subject with the same address; with the tag `unverified` its
// tokens carry no `email_verified` (as a provider that never checked the address).
import https from 'node:https';
import fs from 'node:fs';
import Provider from 'oidc-provider';

const cfg = JSON.parse(process.argv[2]);
const RESOURCE = 'urn:meetbot:test-calendar';

const server = https.createServer({ cert: fs.readFileSync(cfg.cert), key: fs.readFileSync(cfg.key) });
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const issuer = `https://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: cfg.clients.map((c) => ({
    client_id: c.client_id,
    client_secret: c.client_secret,
    redirect_uris: c.redirect_uris,
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_post',
    scope: c.scope,
  })),
  scopes: ['offline_access', ...cfg.scopes],
  pkce: { required: () => true },
  cookies: { keys: ['meetbot-test-only-cookie-key'] },
  // Sign-in (meetbot's API): the account id is the address, as a Google or Microsoft account's is.
  findAccount: async (_ctx, id) => ({
    accountId: id,
    claims: async () => {
      const [tag, address] = id.includes('/') ? id.split('/', 2) : [null, id];
      const claims = {
        sub: `sub-${id}`,
        email: address.includes('@') ? address : `${address}@example.test`,
      };
      if (tag !== 'unverified') claims.email_verified = true;
      return claims;
    },
  }),
  claims: { openid: ['sub'], email: ['email', 'email_verified'] },
  // As Google and Microsoft do: the ID token carries the claims its scopes ask for.
  conformIdTokenClaims: false,
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  // Like Google's access_type=offline: a refresh token whether or not offline_access was asked.
  issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
  // Like Microsoft: every refresh returns a new refresh token and consumes the old one.
  rotateRefreshToken: true,
  ttl: { AccessToken: cfg.access_ttl, RefreshToken: 3600, Grant: 3600, Session: 3600, Interaction: 600, AuthorizationCode: 60 },
  features: {
    devInteractions: { enabled: false },
    revocation: { enabled: true },
    introspection: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => RESOURCE,
      useGrantedResource: async () => true,
      getResourceServerInfo: async () => ({
        scope: cfg.scopes.join(' '),
        accessTokenFormat: 'opaque',
        accessTokenTTL: cfg.access_ttl,
      }),
    },
  },
});

provider.use(async (ctx, next) => {
  const m = ctx.method === 'GET' && ctx.path.match(/^\/interaction\/([^/]+)$/);
  if (!m) return next();
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  const { prompt, params } = details;
  let result;
  if (params.login_hint === 'decline') {
    result = { error: 'access_denied', error_description: 'the user declined' };
  } else if (prompt.name === 'login') {
    result = { login: { accountId: params.login_hint || 'alice' } };
  } else {
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: details.session.accountId, clientId: params.client_id });
    if (prompt.details.missingOIDCScope) grant.addOIDCScope(prompt.details.missingOIDCScope.join(' '));
    for (const [indicator, scopes] of Object.entries(prompt.details.missingResourceScopes || {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    result = { consent: { grantId: await grant.save() } };
  }
  await provider.interactionFinished(ctx.req, ctx.res, result, { mergeWithLastSubmission: true });
});

server.on('request', provider.callback());
process.stdout.write(`${JSON.stringify({ issuer })}\n`);
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
