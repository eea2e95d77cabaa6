// Sign-in with the OIDC issuer's hosted UI (Amazon Cognito's, or any): authorization code + PKCE
// (RFC 7636, S256). The verifier and state live in sessionStorage between the redirect and the
// return; the ID token obtained is then the bearer, as a pasted API key would be.

const PENDING = 'pulse.pkce';

function base64url(bytes) {
  return btoa(String.fromCharCode(...new Uint8Array(bytes))).replaceAll('+', '-').replaceAll('/', '_').replace(/=+$/, '');
}

function randomText(size = 32) {
  return base64url(crypto.getRandomValues(new Uint8Array(size)));
}

/** The redirect URI to register with the issuer's app client: the app's root. */
export function redirectUri() {
  return `${location.origin}/`;
}

/** Off to the issuer's sign-in page; comes back to `/` with ?code=…&state=…. */
export async function startSignIn(oidc) {
  const verifier = randomText(48);
  const state = randomText(16);
  const challenge = base64url(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier)));
  sessionStorage.setItem(PENDING, JSON.stringify({ verifier, state, back: location.pathname }));
  const url = new URL(oidc.authorizationEndpoint);
  url.search = new URLSearchParams({
    response_type: 'code',
    client_id: oidc.clientId,
    redirect_uri: redirectUri(),
    scope: oidc.scope,
    state,
    code_challenge: challenge,
    code_challenge_method: 'S256',
  }).toString();
  location.assign(url.toString());
}

/**
 * On the return from the issuer: the ID token for the code (null when this is no return), and
 * where to go back to. Throws with the reason when the state does not match or the exchange fails.
 */
export async function finishSignIn(oidc) {
  const params = new URLSearchParams(location.search);
  if (!params.has('code') && !params.has('error')) return null;
  const pending = JSON.parse(sessionStorage.getItem(PENDING) || 'null');
  sessionStorage.removeItem(PENDING);
  history.replaceState(null, '', pending?.back || '/'); // the code is single-use: off the address bar
  if (params.has('error')) throw new Error(`the sign-in page answered ${params.get('error')}: ${params.get('error_description') || ''}`);
  if (!pending || params.get('state') !== pending.state) throw new Error('the sign-in answer does not match the request (state); try again');
  const response = await fetch(oidc.tokenEndpoint, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'authorization_code',
      client_id: oidc.clientId,
      code: params.get('code'),
      redirect_uri: redirectUri(),
      code_verifier: pending.verifier,
    }),
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok || !body.id_token) throw new Error(`the token endpoint answered ${response.status}: ${body.error || 'no ID token'}`);
  return body.id_token;
}
