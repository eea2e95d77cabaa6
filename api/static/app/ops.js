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

export async function showOps(root) {
  document.title = 'Operations · Pulse';
  const body = h('div', { 'aria-live': 'polite' });
  root.append(h('h1', {}, 'Operations'), h('p', {}, 'Projection workers: how far behind the event log they are. Refreshed every 2 s.'), body);
  let fields;
  try {
    fields = await projectionFields();
  } catch (error) {
    body.append(h('p', { class: 'widget-error' }, error.message));
    return () => {};
  }
  const load = async () => {
    try {
      const rows = (await gql(`{ projections { ${fields.join(' ')} } }`)).projections;
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
