// /d/<slug>: a dashboard, drawn once from `dashboard`, then kept live by `dashboardUpdated`.
import { authHeaders, follow, gql } from './api.js';
import { announce, clear, h, fill } from './dom.js';
import { ago } from './format.js';
import { WidgetCard } from './widgets.js';

export const DASHBOARD_FIELDS = `
  slug name description tags visibility version state streamVersion releaseNotes publishedAt watermark computedAt
  widgets {
    id kind title description chart markdown imageUrl alt tabs format
    layout { x y w h section tab }
    columns { field label format }
    source { kind metric resolution last compareTo dimension top gauge keys eventType limit dataset fields metrics severities rules }
    data {
      kpi { value previous changePercent }
      kpis { metric value previous changePercent }
      table { columns { name type } rows }
      series { resolution watermark points { bucket value count partial } previous { bucket value } }
      breakdown { key value count }
      gauges { key value occurredAt eventId }
      events { id type occurredAt properties }
      alerts { rule instance state severity value threshold since message }
      error { code message }
    }
  }`;

const RANGES = [
  ['all', 'As designed'],
  ['1440', 'Last 24 hours'],
  ['360', 'Last 6 hours'],
  ['60', 'Last hour'],
  ['15', 'Last 15 minutes'],
];

/** The widget's CSV from Pulse's export route (the dashboard's visibility, the caller's key). */
async function download(slug, widget) {
  const response = await fetch(`/v1/dashboards/${encodeURIComponent(slug)}/widgets/${encodeURIComponent(widget.id)}.csv`, { headers: authHeaders() });
  if (!response.ok) {
    announce(`Cannot download ${widget.title}: Pulse answered ${response.status}`);
    return;
  }
  const link = h('a', { href: URL.createObjectURL(await response.blob()), download: `${widget.id}.csv` });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
}

/** Renders dashboards into `root`; `update` takes every push. Also the editor's preview. */
export class DashboardView {
  constructor(root, { live = true } = {}) {
    this.root = root;
    this.cards = new Map();
    this.range = 'all';
    this.signature = null;
    this.live = live;
    this.status = h('span', { class: 'stream-state', role: 'status', dataset: { state: 'connecting' } }, 'Connecting…');
    this.freshness = h('span', { class: 'freshness' });
    this.heading = h('h1', { id: 'dashboard-title' });
    this.meta = h('p', { class: 'dashboard-meta' });
    const picker = h('select', { id: 'range' }, RANGES.map(([value, label]) => h('option', { value }, label)));
    picker.addEventListener('change', () => {
      this.range = picker.value;
      if (this.last) this.update(this.last);
    });
    this.grid = h('div', { class: 'grid', 'aria-live': 'off' });
    root.append(
      h(
        'div',
        { class: 'dashboard-head' },
        h('div', {}, this.heading, this.meta),
        h('div', { class: 'dashboard-controls' }, h('label', { for: 'range' }, 'Time range '), picker, live ? this.status : null, this.freshness),
      ),
      this.grid,
    );
  }

  points() {
    if (this.range === 'all') return (points) => points;
    const since = Date.now() - Number(this.range) * 60_000;
    // A bucket is shown when it ends after `since`: its start plus one bucket's width.
    return (points) => {
      if (points.length < 2) return points;
      const width = new Date(points[1].bucket) - new Date(points[0].bucket);
      return points.filter((p) => new Date(p.bucket).getTime() + width > since);
    };
  }

  setState(state) {
    this.status.dataset.state = state;
    this.status.textContent = { live: 'Live', reconnecting: 'Reconnecting…', connecting: 'Connecting…' }[state] || state;
    if (state === 'reconnecting') announce('Live updates interrupted, reconnecting');
  }

  build(dashboard) {
    this.cards.forEach((card) => card.destroy());
    this.cards.clear();
    clear(this.grid);
    const sections = new Map();
    for (const widget of dashboard.widgets) {
      const card = new WidgetCard(widget, { csv: this.live ? (w) => download(dashboard.slug, w) : null });
      this.cards.set(widget.id, card);
      if (widget.kind === 'SECTION') sections.set(widget.id, card);
    }
    for (const widget of dashboard.widgets) {
      const card = this.cards.get(widget.id);
      const parent = widget.layout?.section && sections.get(widget.layout.section);
      (parent && parent !== card ? parent.view.slot(widget.layout.tab) : this.grid).append(card.el);
    }
  }

  update(dashboard) {
    this.last = dashboard;
    document.title = `${dashboard.name} · Pulse`;
    this.heading.textContent = dashboard.name;
    const tags = dashboard.tags.length ? ` · ${dashboard.tags.map((t) => `#${t}`).join(' ')}` : '';
    this.meta.textContent = `${dashboard.description || ''}${dashboard.description ? ' · ' : ''}version ${dashboard.version}, ${dashboard.state.toLowerCase()}${tags}`;
    const signature = dashboard.widgets.map((w) => `${w.id}:${w.kind}:${w.chart}:${w.layout?.section}:${w.layout?.tab}:${w.layout?.w}`).join('|');
    if (signature !== this.signature) {
      this.signature = signature;
      this.build(dashboard);
    }
    const points = this.points();
    for (const widget of dashboard.widgets) this.cards.get(widget.id).update(widget, points);
    this.freshness.dataset.watermark = dashboard.watermark || '';
    this.freshness.textContent = dashboard.watermark ? `Data up to ${new Date(dashboard.watermark).toLocaleTimeString()}` : 'No data yet';
    this.freshness.title = dashboard.watermark ? `Latest event counted: ${dashboard.watermark} (${ago(dashboard.watermark)})` : '';
  }

  destroy() {
    this.cards.forEach((card) => card.destroy());
  }
}

function notFound(root, error) {
  fill(root, 
    h('h1', {}, 'Dashboard not found'),
    h('p', { class: 'not-found' }, error.code === 'NOT_FOUND' ? 'There is no dashboard here, or you may not see it. Sign in if it is private.' : error.message),
    h('p', {}, h('a', { href: '/' }, 'All dashboards')),
  );
  document.title = 'Not found · Pulse';
}

/** The page; returns its teardown. */
export async function showDashboard(root, slug, { draft = false, editor = false } = {}) {
  const variables = { slug, draft };
  let first;
  try {
    first = (await gql(`query($slug: String!, $draft: Boolean!) { dashboard(slug: $slug, draft: $draft) { ${DASHBOARD_FIELDS} } }`, variables)).dashboard;
  } catch (error) {
    notFound(root, error);
    return () => {};
  }
  const view = new DashboardView(root);
  view.update(first);
  if (editor) view.meta.after(h('p', {}, h('a', { href: `/edit/${encodeURIComponent(slug)}` }, 'Edit this dashboard')));
  const stop = follow(`subscription($slug: String!, $draft: Boolean!) { dashboardUpdated(slug: $slug, draft: $draft) { ${DASHBOARD_FIELDS} } }`, variables, {
    next: (data) => view.update(data.dashboardUpdated),
    onState: (state) => view.setState(state),
    onError: (error) => view.setState(error.code === 'NOT_FOUND' ? 'gone' : `error: ${error.message}`),
  });
  return () => {
    stop();
    view.destroy();
  };
}
