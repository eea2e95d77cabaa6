// The app's entry: the header (navigation, sign-in), and a router on location.pathname.
import { apiKey, gql, signIn, signOut } from './api.js';
import { clear, h, fill } from './dom.js';
import { showEditor, showNew } from './editor.js';
import { showList } from './list.js';
import { showOps } from './ops.js';
import { finishSignIn, startSignIn } from './pkce.js';
import { showDashboard } from './view.js';

const main = document.getElementById('main');
const account = document.getElementById('account');
let teardown = () => {};
let signedIn = null; // { editor: bool } once a key (or a sign-in token) is accepted
let oidc = null; // the issuer's hosted UI, when Pulse has one configured (/config.json)

/** What the key in sessionStorage may do: editor when a no-op edit is refused for a reason other than scope. */
async function probe() {
  if (!apiKey()) return null;
  try {
    await gql('{ metrics { name } }');
  } catch (error) {
    if (error.code === 'UNAUTHENTICATED') return { invalid: true };
    if (error.code !== 'FORBIDDEN') return { editor: false };
  }
  try {
    // "-" is no valid slug, so this edits nothing: FORBIDDEN without editor, NOT_FOUND (or bad input) with it.
    await gql('mutation { editDashboard(slug: "-") { slug } }');
    return { editor: true };
  } catch (error) {
    return { editor: !['FORBIDDEN', 'UNAUTHENTICATED'].includes(error.code) };
  }
}

function drawAccount(message) {
  clear(account);
  if (signedIn && !signedIn.invalid) {
    account.append(
      h('span', { class: 'who' }, signedIn.editor ? 'Signed in (editor)' : 'Signed in'),
      h('button', { type: 'button', class: 'secondary', id: 'sign-out', onclick: () => { signOut(); signedIn = null; drawAccount(); route(); } }, 'Sign out'),
    );
    return;
  }
  if (oidc) {
    const host = new URL(oidc.authorizationEndpoint).host;
    account.append(h('button', { type: 'button', id: 'oidc-sign-in', onclick: () => startSignIn(oidc) }, `Sign in with ${host}`), h('span', { class: 'who' }, 'or'));
  }
  const key = h('input', { id: 'api-key', type: 'password', autocomplete: 'off', placeholder: 'pulse_…', required: true });
  const form = h(
    'form',
    { class: 'sign-in' },
    h('label', { for: 'api-key' }, 'API key'),
    key,
    h('button', { type: 'submit' }, 'Sign in'),
    message ? h('span', { class: 'form-error', role: 'alert' }, message) : null,
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    signIn(key.value);
    signedIn = await probe();
    if (!signedIn || signedIn.invalid) {
      signOut();
      signedIn = null;
      drawAccount('That key is not valid.');
      return;
    }
    drawAccount();
    route();
  });
  account.append(form);
}

function drawNav() {
  const nav = document.getElementById('nav');
  fill(nav, 
    h('a', { href: '/' }, 'Dashboards'),
    signedIn?.editor ? h('a', { href: '/new' }, 'New') : null,
    signedIn ? h('a', { href: '/ops' }, 'Operations') : null,
    h('a', { href: '/graphql' }, 'GraphiQL'),
  );
  for (const link of nav.querySelectorAll('a')) {
    if (link.getAttribute('href') === location.pathname) link.setAttribute('aria-current', 'page');
  }
}

export function navigate(path) {
  history.pushState(null, '', path);
  route();
}

async function route() {
  teardown();
  teardown = () => {};
  clear(main);
  drawNav();
  const path = decodeURIComponent(location.pathname);
  let match;
  const editor = Boolean(signedIn?.editor);
  if (path === '/') teardown = await showList(main, { editor });
  else if ((match = /^\/d\/([^/]+)$/.exec(path))) teardown = await showDashboard(main, match[1], { editor });
  else if (path === '/new' && editor) teardown = showNew(main, navigate);
  else if ((match = /^\/edit\/([^/]+)$/.exec(path)) && editor) teardown = await showEditor(main, match[1], navigate);
  else if (path === '/ops' && signedIn) teardown = await showOps(main);
  else if (['/new', '/ops'].includes(path) || path.startsWith('/edit/')) {
    main.append(h('h1', {}, 'Sign in first'), h('p', { class: 'not-found' }, path === '/ops' ? 'Sign in with an API key to see the operations page.' : 'Sign in with an editor key (scope editor or admin) to create and edit dashboards.'));
  } else main.append(h('h1', {}, 'Page not found'), h('p', { class: 'not-found' }, h('a', { href: '/' }, 'All dashboards')));
  main.focus({ preventScroll: true });
}

// Same-origin links go through the router: no reload, the live stream of the page left is closed.
document.addEventListener('click', (event) => {
  const link = event.target.closest?.('a[href^="/"]');
  if (!link || link.target || link.hasAttribute('download') || event.ctrlKey || event.metaKey || event.shiftKey) return;
  const href = link.getAttribute('href');
  if (href.startsWith('/graphql') || href.startsWith('/vendor/') || href.startsWith('/v1/')) return;
  event.preventDefault();
  navigate(href);
});
window.addEventListener('popstate', route);

let signInProblem = null;
// Whether Pulse offers the issuer's sign-in; waited for only on the way back from it, so that a
// dashboard does not wait a round trip longer to be drawn.
const configured = fetch('/config.json')
  .then((response) => response.json())
  .then((config) => config.oidc)
  .catch(() => null);
const query = new URLSearchParams(location.search);
if (query.has('code') || query.has('error')) {
  try {
    oidc = await configured;
    const token = oidc ? await finishSignIn(oidc) : null;
    if (token) signIn(token);
  } catch (error) {
    signInProblem = `Sign-in failed: ${error.message}`;
  }
}
signedIn = await probe();
if (signedIn?.invalid) {
  signOut();
  signedIn = null;
  signInProblem = signInProblem || 'Pulse refused the sign-in.';
}
drawAccount(signInProblem);
configured.then((found) => {
  if (!found || oidc) return;
  oidc = found; // also for the sign-in form shown after signing out
  if (!signedIn && !document.getElementById('api-key')?.value) drawAccount(signInProblem);
});
await route();
// When the first page was drawn, in ms since navigation started (bench/webapp_render.py reads it).
document.body.dataset.readyMs = String(Math.round(performance.now()));
document.body.dataset.ready = 'true';
