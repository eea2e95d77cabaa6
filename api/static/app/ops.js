// /ops: the projection workers, with whatever the running schema tells about them (lag, throughput,
// and replay state/progress or parked events where this Pulse has those fields), and the alert
// rules with their instances' states where this Pulse answers `alertRules`.
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

/** The root query fields this Pulse answers (a newer schema than the app may know), with their types. */
async function queryFields() {
  const data = await gql('{ __schema { queryType { fields { name type { name ofType { name ofType { name ofType { name } } } } } } } }');
  const named = (t) => (t ? t.name || named(t.ofType) : null);
  return new Map(data.__schema.queryType.fields.map((f) => [f.name, named(f.type)]));
}

const RULE_WANTED = ['name', 'severity', 'condition', 'threshold', 'gauge', 'metric', 'perDimension', 'paused', 'snoozedUntil', 'firing'];
const RULE_LABELS = {
  name: 'Rule', severity: 'Severity', condition: 'Condition', threshold: 'Threshold', gauge: 'Gauge', metric: 'Metric',
  perDimension: 'Per', paused: 'Paused', snoozedUntil: 'Snoozed until', firing: 'Alerting',
};

/** The scalar fields of the rules' type that this Pulse has, and whether its instances have key/state/since. */
async function ruleFields(typeName) {
  const data = await gql(`{ rule: __type(name: "${typeName}") { fields { name type { kind ofType { kind name } name } } } }`);
  const fields = data.rule?.fields || [];
  const scalar = (t) => t.kind === 'SCALAR' || t.kind === 'ENUM' || (t.kind === 'NON_NULL' && ['SCALAR', 'ENUM'].includes(t.ofType?.kind));
  const present = new Set(fields.filter((f) => scalar(f.type)).map((f) => f.name));
  return { columns: RULE_WANTED.filter((name) => present.has(name)), instances: fields.some((f) => f.name === 'instances') };
}

function instancesCell(instances) {
  if (!instances?.length) return h('td', {}, 'No instance evaluated yet');
  return h(
    'td',
    {},
    h('ul', { class: 'instances' }, instances.map((i) => h('li', { dataset: { instance: i.key, state: i.state } }, `${i.key || '(one instance)'}: `, h('strong', {}, i.state), ` since ${ago(i.since)}${i.value === null || i.value === undefined ? '' : ` · ${formatValue(i.value)}`}`))),
  );
}

function rulesTable(rules, { columns, instances }) {
  if (!rules.length) return h('p', {}, 'No alert rules.');
  const headings = [...columns.map((c) => RULE_LABELS[c] || c), ...(instances ? ['Instances'] : [])];
  return h(
    'table',
    { class: 'ops' },
    h('caption', { class: 'visually-hidden' }, 'Alert rules'),
    h('thead', {}, h('tr', {}, headings.map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', {}, rules.map((r) => h('tr', { dataset: { rule: r.name } }, columns.map((c) => h('td', {}, c === 'snoozedUntil' ? (r[c] ? new Date(r[c]).toLocaleString() : '—') : cell(c, r[c]))), instances ? instancesCell(r.instances) : null))),
  );
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
  const alerts = h('div', { 'aria-live': 'polite' });
  root.append(h('h1', {}, 'Operations'), h('p', {}, 'Projection workers: how far behind the event log they are. Refreshed every 2 s.'), body);
  let fields;
  let withParked;
  let rules = null;
  try {
    fields = await projectionFields();
    const roots = await queryFields();
    withParked = roots.has('parkedEvents');
    if (roots.has('alertRules')) rules = await ruleFields(roots.get('alertRules'));
  } catch (error) {
    body.append(h('p', { class: 'widget-error' }, error.message));
    return () => {};
  }
  if (withParked) root.append(h('h2', {}, 'Parked events'), h('p', {}, 'Events a projection could not apply; retry or drop them with `pulse parked` or the retryParked / dropParked mutations.'), parked);
  if (rules) root.append(h('h2', {}, 'Alert rules'), h('p', {}, 'Each rule and the state of its instances (NORMAL, PENDING, FIRING, RECOVERING, NO_DATA, ERROR).'), alerts);
  const load = async () => {
    try {
      const parkedQuery = withParked ? ' parkedEvents { projection eventId eventType attempts lastFailure error }' : '';
      const rulesQuery = rules ? ` alertRules { ${rules.columns.join(' ')}${rules.instances ? ' instances { key state since value }' : ''} }` : '';
      const answer = await gql(`{ projections { ${fields.join(' ')} }${parkedQuery}${rulesQuery} }`);
      if (withParked) fill(parked, parkedTable(answer.parkedEvents));
      if (rules) fill(alerts, rulesTable(answer.alertRules, rules));
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
