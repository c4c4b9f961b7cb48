// oidc-provider (OpenID Certified, https://github.com/panva/node-oidc-provider) as a local
// identity provider for Switchboard's sign-in tests (crates/identity/tests/oidc_provider.rs).
//
//   node server.mjs            listens on 127.0.0.1 at a port the system picks
//
// Prints one JSON line on stdout once it listens: {"issuer": "...", "client_id": "..."}.
// Stops when stdin closes (the test's child handle is dropped) or on SIGTERM.
//
// Environment: OIDC_AT_TTL (access-token lifetime in seconds, default 3600).
//
// The provider is the library's own; only its user-facing pages are ours (a login form that
// checks a password, a consent form), because the library's development pages are not meant
// to be driven by a program. Test-only control: POST /_test/rotate puts a new signing key in
// front of the old one (the old stays published, as real providers do), by building a new
// Provider over the same in-memory storage.
import http from 'node:http';
import crypto from 'node:crypto';
import Provider from 'oidc-provider';

const CLIENT_ID = 'switchboard-test';
const USERS = new Map([
  ['alex@example.test', { sub: 'b3f1c2d4-alex', name: 'Alex Wilber', password: 'correct horse' }],
  ['megan@example.test', { sub: 'c9a0e1f2-megan', name: 'Megan Bowen', password: 'battery staple' }],
]);
const AT_TTL = Number(process.env.OIDC_AT_TTL || 3600);

function newKey() {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  return { ...jwk, kid: crypto.randomBytes(8).toString('hex'), use: 'sig', alg: 'RS256' };
}

const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const page = (title, body) => `<!DOCTYPE html><html><head><meta charset="utf-8"><title>${escape(title)}</title></head><body><h1>${escape(title)}</h1>
${body}
</body></html>`;
const hidden = (name, value) => `<input type="hidden" name="${escape(name)}" value="${escape(value)}"/>`;

let keys = [newKey()];
let provider;

function build(issuer) {
  const p = new Provider(issuer, {
    clients: [{
      client_id: CLIENT_ID,
      application_type: 'native',
      token_endpoint_auth_method: 'none',
      // RFC 8252 §7.3: for native clients the library accepts any port on a loopback URI.
      redirect_uris: ['http://127.0.0.1/', 'http://localhost/'],
      grant_types: ['authorization_code', 'refresh_token', 'urn:ietf:params:oauth:grant-type:device_code'],
      response_types: ['code'],
    }],
    jwks: { keys },
    cookies: { keys: ['switchboard-test-cookie-key'] },
    claims: { openid: ['sub'], profile: ['name', 'preferred_username'], email: ['email'] },
    // Put name and preferred_username in the id_token of the code flow, as Microsoft does.
    conformIdTokenClaims: false,
    features: {
      devInteractions: { enabled: false },
      deviceFlow: { enabled: true },
      revocation: { enabled: true },
      userinfo: { enabled: true },
    },
    // The test and the provider share one clock: an expired access token is refused at once
    // (the library's default tolerance is 15 s).
    clockTolerance: 0,
    pkce: { required: () => true, methods: ['S256'] },
    ttl: { AccessToken: AT_TTL, DeviceCode: 300, IdToken: 3600, RefreshToken: 86400, Interaction: 600, Session: 3600, Grant: 86400 },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    async findAccount(ctx, sub) {
      const entry = [...USERS.entries()].find(([, u]) => u.sub === sub);
      if (!entry) return undefined;
      const [login, user] = entry;
      return {
        accountId: sub,
        async claims() {
          return { sub, name: user.name, preferred_username: login, email: login };
        },
      };
    },
  });
  p.on('server_error', (ctx, err) => console.error('oidc-provider server_error', err));
  return p;
}

function readForm(req) {
  return new Promise((resolve, reject) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c) => {
      body += c;
      if (body.length > 65536) reject(new Error('form too large'));
    });
    req.on('end', () => resolve(Object.fromEntries(new URLSearchParams(body))));
    req.on('error', reject);
  });
}

function send(res, status, html) {
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  res.end(html);
}

function loginPage(uid, error) {
  return page('Sign in', `${error ? `<p class="error">${escape(error)}</p>` : ''}
<form method="post" action="/interaction/${escape(uid)}/login">
<input type="text" name="login"/>
<input type="password" name="password"/>
</form>`);
}

async function interaction(req, res, url) {
  const [, , uid, step] = url.pathname.split('/');
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) return send(res, 400, page('Wrong interaction', ''));
  const { prompt, params, session } = details;
  if (req.method === 'GET') {
    if (prompt.name === 'login') return send(res, 200, loginPage(uid));
    return send(res, 200, page('Allow access', `<p>${escape(params.client_id)} asks for: ${escape(params.scope || '')}</p>
<form method="post" action="/interaction/${escape(uid)}/confirm">
${hidden('confirm', 'yes')}
</form>`));
  }
  const form = await readForm(req);
  if (step === 'login') {
    const user = USERS.get(String(form.login || '').toLowerCase());
    if (!user || user.password !== form.password) {
      return send(res, 200, loginPage(uid, 'Your account or password is incorrect.'));
    }
    return provider.interactionFinished(req, res, { login: { accountId: user.sub } }, { mergeWithLastSubmission: false });
  }
  if (step === 'confirm') {
    if (form.confirm !== 'yes') {
      return provider.interactionFinished(req, res, { error: 'access_denied', error_description: 'the person declined' }, { mergeWithLastSubmission: false });
    }
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    const missing = prompt.details;
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes || {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    const grantId = await grant.save();
    return provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
  }
  return send(res, 404, page('Not found', ''));
}

const server = http.createServer(async (req, res) => {
  try {
    const url = new URL(req.url, 'http://127.0.0.1');
    if (url.pathname === '/_test/rotate' && req.method === 'POST') {
      keys = [newKey(), ...keys];
      provider = build(provider.issuer);
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end(JSON.stringify({ kid: keys[0].kid }));
    }
    if (url.pathname.startsWith('/interaction/')) return await interaction(req, res, url);
    return provider.callback()(req, res);
  } catch (err) {
    console.error('oidc test server:', err);
    if (!res.headersSent) send(res, 500, page('Error', escape(err.message)));
    else res.end();
  }
});

server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  provider = build(issuer);
  process.stdout.write(`${JSON.stringify({ issuer, client_id: CLIENT_ID })}\n`);
});

const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.stdin.on('end', stop);
process.stdin.resume();
