// A real OAuth 2.0 provider we did not write (the `oidc-provider` npm package, pinned in the
// repository's package-lock.json), started by tests/interop/conftest.py on 127.0.0.1.
//
// Usage: node provider.mjs CONFIG_JSON_FILE  (stdin: a pipe; EOF stops the provider)
// It binds 127.0.0.1 on the port the config names (0: any free port), then prints one JSON
// line on stdout, {"issuer": ..., "port": ...}; other stdout lines are oidc-provider notices.
//
// The configuration is the strict one (tests/interop/README.md says more):
// - PKCE required for every client, S256 only (RFC 7636 §4.2, RFC 9700 §2.1.1);
// - refresh tokens issued on the plain OAuth 2.0 code flow (no `openid`, no `offline_access`,
//   no `prompt=consent`: oidc-provider's default issues them only for `offline_access`), and
//   rotated on every use; a consumed one replayed revokes the whole grant (RFC 9700 §4.14.2);
// - access tokens that live the few seconds each client's `access_token_ttl` says;
// - revocation (RFC 7009), introspection (RFC 7662), discovery, `iss` in authorization
//   responses (RFC 9207, oidc-provider sends it by default);
// - each client authenticates only with its registered `token_endpoint_auth_method`
//   (RFC 7591 §2). oidc-provider 8.8.1 itself accepts client_secret_basic and
//   client_secret_post interchangeably, so the wrapper below enforces the registered one.
//
// Test-only routes under /_interop/ (never part of the provider):
// - GET /_interop/log: every token, revocation and introspection request that reached the
//   provider (grant type, client, auth method used, status, error, tokens issued), the
//   authorization codes issued, the grants revoked and the metadata (/.well-known/) GETs,
//   in order.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';

import Provider from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));

const ROUTES = {
  authorization: '/auth',
  token: '/token',
  revocation: '/token/revocation',
  introspection: '/token/introspection',
};
const CLIENT_AUTH_ROUTES = new Set([ROUTES.token, ROUTES.revocation, ROUTES.introspection]);

const registered = new Map(config.clients.map((client) => [client.client_id, client]));

const log = { requests: [], codes: [], revoked_grants: [], metadata: [] };
const entries = new WeakMap(); // req -> its entry in log.requests

function clientMetadata(client) {
  const metadata = {
    client_id: client.client_id,
    token_endpoint_auth_method: client.token_endpoint_auth_method,
    redirect_uris: client.redirect_uris ?? [],
    grant_types: client.grant_types ?? ['authorization_code', 'refresh_token'],
    response_types: client.response_types ?? ['code'],
  };
  if (client.client_secret !== undefined) {
    metadata.client_secret = client.client_secret;
  }
  return metadata;
}

// RFC 6749 Appendix B: the Basic credentials are form-urlencoded before base64.
function decodeFormComponent(value) {
  return decodeURIComponent(value.replace(/\+/g, '%20'));
}

// Which client a request names, and which RFC 6749 §2.3.1 method it authenticates with.
function clientAuthOf(req, form) {
  const header = req.headers.authorization;
  if (header !== undefined) {
    const [scheme, value] = header.split(' ');
    if (scheme?.toLowerCase() === 'basic' && value) {
      const basic = Buffer.from(value, 'base64').toString('utf8');
      const colon = basic.indexOf(':');
      if (colon === -1) {
        return { clientId: undefined, method: 'client_secret_basic' };
      }
      try {
        return { clientId: decodeFormComponent(basic.slice(0, colon)), method: 'client_secret_basic' };
      } catch {
        return { clientId: undefined, method: 'client_secret_basic' };
      }
    }
    return { clientId: form.get('client_id') ?? undefined, method: 'other' };
  }
  return {
    clientId: form.get('client_id') ?? undefined,
    method: form.has('client_secret') ? 'client_secret_post' : 'none',
  };
}

async function readBody(req) {
  const chunks = [];
  for await (const chunk of req) {
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

function sendJson(res, status, body, headers = {}) {
  res.writeHead(status, {
    'Content-Type': 'application/json; charset=utf-8',
    'Cache-Control': 'no-store',
    ...headers,
  });
  res.end(JSON.stringify(body));
}

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), use: 'sig', alg: 'RS256', kid: 'interop' };

const defaultAccessTtl = config.access_token_ttl ?? 60;

const configuration = {
  clients: config.clients.map(clientMetadata),
  clientAuthMethods: ['none', 'client_secret_basic', 'client_secret_post'],
  scopes: config.scopes,
  responseTypes: ['code'],
  routes: ROUTES,
  jwks: { keys: [signingKey] },
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  pkce: {
    methods: ['S256'],
    required: () => true,
  },
  // The plain OAuth 2.0 code flow gets a refresh token whenever the client may use the
  // refresh_token grant (the default wants the OIDC `offline_access` scope).
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  // Tokens outlive the person's login session at the provider: the agent uses them offline.
  expiresWithSession: async () => false,
  rotateRefreshToken: true,
  ttl: {
    AccessToken: (ctx, token, client) => registered.get(client.clientId)?.access_token_ttl ?? defaultAccessTtl,
    AuthorizationCode: 60,
    Grant: 24 * 3600,
    IdToken: 3600,
    Interaction: 600,
    RefreshToken: 24 * 3600,
    Session: 24 * 3600,
  },
  findAccount: async (ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
  features: {
    devInteractions: { enabled: true },
    revocation: { enabled: true },
    introspection: {
      enabled: true,
      // A confidential client may introspect any token (it plays the resource server);
      // others only their own.
      allowedPolicy: async (ctx, client, token) => client.clientAuthMethod !== 'none'
        || token.clientId === client.clientId,
    },
    userinfo: { enabled: true },
  },
  renderError: async (ctx, out) => {
    ctx.type = 'html';
    const text = `${out.error}: ${out.error_description ?? ''}`.replace(/[<>&"]/g, '');
    ctx.body = `<!DOCTYPE html><title>oidc-provider error</title><p id="error">${text}</p>`;
  },
};

const server = http.createServer();
server.listen(config.port ?? 0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, configuration);

  provider.on('grant.success', (ctx) => {
    const entry = entries.get(ctx.req);
    if (entry) {
      entry.access_token = ctx.body?.access_token ?? null;
      entry.issued_refresh_token = ctx.body?.refresh_token ?? null;
      entry.expires_in = ctx.body?.expires_in ?? null;
      entry.scope = ctx.body?.scope ?? null;
    }
  });
  provider.on('grant.error', (ctx, err) => {
    const entry = entries.get(ctx.req);
    if (entry) {
      entry.error = err.error ?? null;
      entry.error_description = err.error_description ?? null;
    }
  });
  provider.on('authorization.success', (ctx, out) => {
    log.codes.push({ client_id: ctx.oidc.client?.clientId ?? null, code: out.code ?? null });
  });
  provider.on('grant.revoked', (ctx, grantId) => {
    log.revoked_grants.push({ client_id: ctx.oidc.client?.clientId ?? null, grant_id: grantId });
  });

  const handle = provider.callback();

  server.on('request', (req, res) => {
    route(req, res).catch((err) => {
      process.stderr.write(`interop wrapper: ${err.stack}\n`);
      if (!res.headersSent) sendJson(res, 500, { error: 'server_error' });
      else res.destroy();
    });
  });

  async function route(req, res) {
    const path = new URL(req.url, issuer).pathname;
    if (req.method === 'GET' && path === '/_interop/log') {
      sendJson(res, 200, log);
      return;
    }
    if (req.method === 'GET' && path.startsWith('/.well-known/')) {
      const entry = { path, status: null };
      log.metadata.push(entry);
      res.on('finish', () => { entry.status = res.statusCode; });
    }
    if (req.method === 'POST' && CLIENT_AUTH_ROUTES.has(path)) {
      // Read the form here to see the client auth; oidc-provider takes the already-read
      // body from req.body (lib/shared/selective_body.js).
      const body = await readBody(req);
      req.body = body;
      const form = new URLSearchParams(body.toString('utf8'));
      const { clientId, method } = clientAuthOf(req, form);
      const entry = {
        path,
        grant_type: form.get('grant_type'),
        token_type_hint: form.get('token_type_hint'),
        token: form.get('token'),
        presented_refresh_token: form.get('refresh_token'),
        client_id: clientId ?? null,
        auth_method: method,
        status: null,
        error: null,
      };
      log.requests.push(entry);
      entries.set(req, entry);
      res.on('finish', () => { entry.status = res.statusCode; });
      const client = registered.get(clientId);
      if (client && client.token_endpoint_auth_method !== method) {
        entry.error = 'invalid_client';
        entry.error_description = `registered ${client.token_endpoint_auth_method}, used ${method}`;
        sendJson(res, 401, {
          error: 'invalid_client',
          error_description: `this client authenticates with ${client.token_endpoint_auth_method}`,
        }, method === 'client_secret_basic' ? { 'WWW-Authenticate': 'Basic realm="interop"' } : {});
        return;
      }
    }
    handle(req, res);
  }

  process.stdout.write(`${JSON.stringify({ issuer, port })}\n`);
});

function stop() {
  server.close();
  server.closeAllConnections();
  process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
// The test holds our stdin open; when it ends (the test process exited, even killed),
// so do we: no provider outlives its test run.
process.stdin.on('end', stop);
process.stdin.resume();
