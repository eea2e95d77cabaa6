// Talking to Pulse: GraphQL over fetch, subscriptions over graphql-sse, the API key in sessionStorage.
import { createClient } from '/vendor/graphql-sse/client.mjs';

const KEY = 'pulse.key';

export function apiKey() {
  return sessionStorage.getItem(KEY);
}

export function signIn(key) {
  sessionStorage.setItem(KEY, key.trim());
}

export function signOut() {
  sessionStorage.removeItem(KEY);
}

export function authHeaders() {
  const key = apiKey();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

export class GraphQLError extends Error {
  constructor(errors) {
    super(errors.map((e) => e.message).join('; '));
    this.errors = errors;
    this.code = errors[0]?.extensions?.code || null;
  }
}

/** A query or mutation's `data`; throws GraphQLError with the first error's code. */
export async function gql(query, variables = {}) {
  const response = await fetch('/graphql', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Accept: 'application/json', ...authHeaders() },
    body: JSON.stringify({ query, variables }),
  });
  let body;
  try {
    body = await response.json();
  } catch {
    throw new GraphQLError([{ message: `Pulse answered ${response.status}`, extensions: { code: 'HTTP' } }]);
  }
  if (body.errors && body.errors.length) throw new GraphQLError(body.errors);
  if (!response.ok) {
    throw new GraphQLError([{ message: body.message || `Pulse answered ${response.status}`, extensions: { code: 'HTTP' } }]);
  }
  return body.data;
}

/** The scopes of the key in use (null when signed out or the key is refused). */
export async function whoAmI() {
  if (!apiKey()) return null;
  try {
    await gql('{ metrics { name } }');
    return { read: true };
  } catch (error) {
    if (error.code === 'UNAUTHENTICATED') return null;
    return { read: false };
  }
}

/**
 * Follow a subscription for good: graphql-sse in distinct connections mode (one fetch per
 * subscription, so the Authorization header goes with it). When the stream drops or the server
 * ends it, `onState('reconnecting')` and a new one after a short pause; `onState('live')` once
 * connected. Returns a function that stops it.
 */
export function follow(query, variables, { next, onState, onError }) {
  let stopped = false;
  let dispose = () => {};
  let pause = 500;
  const client = createClient({
    url: '/graphql',
    headers: authHeaders,
    retryAttempts: 0, // our own loop below retries, for network errors and clean ends alike
  });
  const start = () => {
    if (stopped) return;
    dispose = client.subscribe(
      { query, variables },
      {
        next(result) {
          pause = 500;
          if (result.errors && result.errors.length) {
            stopped = true; // NOT_FOUND and the like: the stream's only payload, retrying will not help
            dispose();
            onError(new GraphQLError(result.errors));
          } else {
            next(result.data);
          }
        },
        error(error) {
          if (stopped) return;
          onState('reconnecting', error);
          setTimeout(start, pause);
          pause = Math.min(pause * 2, 5000);
        },
        complete() {
          if (stopped) return;
          onState('reconnecting');
          setTimeout(start, pause);
          pause = Math.min(pause * 2, 5000);
        },
      },
      {
        connecting(reconnecting) {
          if (reconnecting) onState('reconnecting');
        },
        connected() {
          onState('live');
        },
      },
    );
  };
  start();
  return () => {
    stopped = true;
    dispose();
    client.dispose();
  };
}
