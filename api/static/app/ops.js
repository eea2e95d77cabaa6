// /ops: the projection workers, with whatever the running schema tells about them (lag, throughput,
// and replay state/progress or parked events where this Pulse has those fields).
import { gql } from './api.js';
import { h, fill } from './dom.js';
import { ago, formatValue } from './format.js';

const WANTED = ['name', 'partition', 'lagEvents', 'lagSeconds', 'eventsPerSecond', 'watermark', 'updatedAt', 'state', 'progress', 'eta', 'parked', 'parkedEvents', 'generation'];

const LABELS = {
  name: 'Projection', partition: 'Partition', lagEvents: 'Lag (events)', lagSeconds: 'Lag (s)', eventsPerSecond: 'Events/s',
  watermark: 'Watermark', updatedAt: 'Updated', state: 'State', progress: 'Progress', eta: 'ETA', parked: 'Parked',
  parkedEvents: 'Parked events', generation: 'Generation',
};

async function projectionFields() {
  const data = await gql('{ __type(name: "ProjectionStatus") { fields { name type { kind ofType { kind } } } } }');
  const scalar = (t) => t.kind === 'SCALAR' || t.kind === 'ENUM' || (t.kind === 'NON_NULL' && ['SCALAR', 'ENUM'].includes(t.ofType?.kind));
  const present = new Set((data.__type?.fields || []).filter((f) => scalar(f.type)).map((f) => f.name));
  return WANTED.filter((name) => present.has(name));
}

function cell(name, value) {
  if (name === 'watermark' || name === 'updatedAt') return value ? ago(value) : '—';
  if (name === 'eventsPerSecond' || name === 'lagSeconds' || name === 'progress') return formatValue(value);
  return value === null || value === undefined ? '—' : String(value);
}

/** Whether this Pulse answers `parkedEvents` (a newer schema than the app may know). */
async function hasParked() {
  const data = await gql('{ __schema { queryType { fields { name } } } }');
  return data.__schema.queryType.fields.some((f) => f.name === 'parkedEvents');
}

function parkedTable(rows) {
  if (!rows.length) return h('p', {}, 'No parked events.');
  return h(
    'table',
    { class: 'ops' },
    h('caption', { class: 'visually-hidden' }, 'Parked events'),
    h('thead', {}, h('tr', {}, ['Projection', 'Event', 'Type', 'Attempts', 'Last failure', 'Error'].map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', {}, rows.map((p) => h('tr', {}, h('td', {}, p.projection), h('td', {}, p.eventId), h('td', {}, p.eventType), h('td', { class: 'num' }, p.attempts), h('td', {}, ago(p.lastFailure)), h('td', {}, p.error)))),
  );
}

export async function showOps(root) {
  document.title = 'Operations · Pulse';
  const body = h('div', { 'aria-live': 'polite' });
  const parked = h('div', { 'aria-live': 'polite' });
  root.append(h('h1', {}, 'Operations'), h('p', {}, 'Projection workers: how far behind the event log they are. Refreshed every 2 s.'), body);
  let fields;
  let withParked;
  try {
    fields = await projectionFields();
    withParked = await hasParked();
  } catch (error) {
    body.append(h('p', { class: 'widget-error' }, error.message));
    return () => {};
  }
  if (withParked) root.append(h('h2', {}, 'Parked events'), h('p', {}, 'Events a projection could not apply; retry or drop them with `pulse parked` or the retryParked / dropParked mutations.'), parked);
  const load = async () => {
    try {
      const parkedQuery = withParked ? ' parkedEvents { projection eventId eventType attempts lastFailure error }' : '';
      const answer = await gql(`{ projections { ${fields.join(' ')} }${parkedQuery} }`);
      if (withParked) fill(parked, parkedTable(answer.parkedEvents));
      const rows = answer.projections;
      fill(body, 
        h(
          'table',
          { class: 'ops' },
          h('caption', { class: 'visually-hidden' }, 'Projections'),
          h('thead', {}, h('tr', {}, fields.map((f) => h('th', { scope: 'col' }, LABELS[f] || f)))),
          h('tbody', {}, rows.map((row) => h('tr', { dataset: { projection: row.name } }, fields.map((f) => h('td', {}, cell(f, row[f])))))),
        ),
      );
    } catch (error) {
      fill(body, h('p', { class: 'widget-error' }, error.code === 'UNAUTHENTICATED' || error.code === 'FORBIDDEN' ? 'Sign in with a key that may read to see the projections.' : error.message));
    }
  };
  await load();
  const timer = setInterval(load, 2000);
  return () => clearInterval(timer);
}
