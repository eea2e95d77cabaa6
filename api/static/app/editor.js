// /new and /edit/<slug>: compose a dashboard from forms, preview the draft, publish, see versions, archive.
import { gql } from './api.js';
import { announce, clear, h, fill } from './dom.js';
import { DASHBOARD_FIELDS, DashboardView } from './view.js';

const KINDS = [
  ['KPI', 'KPI tile (a number and its change)'],
  ['CHART', 'Chart'],
  ['TABLE', 'Table'],
  ['GAUGE', 'Gauges (latest readings)'],
  ['RECENT_EVENTS', 'Recent events feed'],
  ['ALERTS', 'Alerts firing now'],
  ['TEXT', 'Text (Markdown)'],
  ['IMAGE', 'Image'],
  ['SECTION', 'Section (groups widgets, optional tabs)'],
];
const SEVERITY_CHOICES = [
  ['', 'Every severity'],
  ['CRITICAL', 'Critical only'],
  ['CRITICAL,WARNING', 'Critical and warning'],
];
const CHARTS = ['LINE', 'COLUMN', 'BAR', 'STACKED_COLUMN', 'PIE', 'DONUT'];
const RESOLUTIONS = ['MINUTE', 'HOUR', 'DAY'];
const FORMATS = ['NUMBER', 'CURRENCY', 'PERCENT', 'TEXT', 'DATETIME'];
const DEFINITION = `slug name description tags visibility version state streamVersion hasDraft
  widgets { id kind title description chart markdown imageUrl alt tabs format layout { x y w h section tab }
            columns { field label format } source { kind metric resolution last compareTo dimension top gauge keys eventType limit severities rules } }`;

let uid = 0;
function field(label, control, hint) {
  const id = control.id || `f${++uid}`;
  control.id = id;
  const hintId = hint ? `${id}-hint` : null;
  if (hintId) control.setAttribute('aria-describedby', hintId);
  return h('div', { class: 'field' }, h('label', { for: id }, label), control, hint ? h('small', { id: hintId }, hint) : null);
}
const select = (name, options, value) =>
  h('select', { name }, options.map((o) => (Array.isArray(o) ? h('option', { value: o[0], selected: o[0] === value }, o[1]) : h('option', { value: o, selected: o === value }, o))));
const input = (name, value, attrs = {}) => h('input', { name, value: value ?? '', ...attrs });
const slugOf = (text) => text.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 60);

function errorBox() {
  return h('div', { class: 'form-error', role: 'alert' });
}

function showError(box, error) {
  fill(box, error ? error.message : '');
}

// --- /new ---------------------------------------------------------------------------------------

export function showNew(root, navigate) {
  document.title = 'New dashboard · Pulse';
  const name = input('name', '', { required: true, autocomplete: 'off' });
  const slug = input('slug', '', { required: true, pattern: '[a-z0-9][a-z0-9-]*', autocomplete: 'off' });
  const description = h('textarea', { name: 'description', rows: 2 });
  const tags = input('tags', '');
  const visibility = select('visibility', [['PRIVATE', 'Private: only people with a key'], ['PUBLIC', 'Public: anyone, once published']], 'PRIVATE');
  let slugTouched = false;
  slug.addEventListener('input', () => (slugTouched = true));
  name.addEventListener('input', () => {
    if (!slugTouched) slug.value = slugOf(name.value);
  });
  const errors = errorBox();
  const form = h(
    'form',
    { class: 'stack' },
    field('Name', name),
    field('Address (slug)', slug, 'Lowercase letters, digits and dashes; the page will be /d/<slug>, for good.'),
    field('Description', description),
    field('Tags', tags, 'Comma-separated, e.g. sales, coffee'),
    field('Who may see it', visibility),
    errors,
    h('button', { type: 'submit' }, 'Create draft'),
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    try {
      await gql('mutation($input: DashboardInput!) { createDashboard(input: $input) { slug } }', {
        input: {
          slug: slug.value.trim(),
          name: name.value.trim(),
          description: description.value.trim() || null,
          tags: tags.value.split(',').map((t) => t.trim()).filter(Boolean),
          visibility: visibility.value,
        },
      });
      navigate(`/edit/${slug.value.trim()}`);
    } catch (error) {
      showError(errors, error);
    }
  });
  root.append(h('h1', {}, 'New dashboard'), form);
  name.focus();
  return () => {};
}

// --- the widget form ------------------------------------------------------------------------------

function widgetForm(widget, { metrics, gauges, sections }, onSave, onCancel) {
  const w = widget || { kind: 'KPI', layout: { w: 4 }, source: {} };
  const src = w.source || {};
  const els = {
    title: input('title', w.title, { required: true }),
    kind: select('kind', KINDS, w.kind),
    description: input('description', w.description),
    width: input('width', w.layout?.w ?? 4, { type: 'number', min: 1, max: 12 }),
    section: select('section', [['', '(top level)'], ...sections.filter((s) => s.id !== w.id).map((s) => [s.id, s.title])], w.layout?.section || ''),
    tab: input('tab', w.layout?.tab),
    chart: select('chart', CHARTS, w.chart || 'LINE'),
    format: select('format', FORMATS, w.format || 'NUMBER'),
    sourceKind: select('sourceKind', [['SERIES', 'A metric over time'], ['BREAKDOWN', 'A metric by dimension']], src.kind === 'BREAKDOWN' ? 'BREAKDOWN' : 'SERIES'),
    metric: select('metric', metrics.map((m) => m.name), src.metric),
    resolution: select('resolution', RESOLUTIONS, src.resolution || 'HOUR'),
    last: input('last', src.last ?? '', { type: 'number', min: 1, max: 1000 }),
    compare: select('compare', [['', 'Nothing'], ['PREVIOUS_PERIOD', 'The previous period']], src.compareTo || (widget ? '' : 'PREVIOUS_PERIOD')),
    dimension: input('dimension', src.dimension),
    top: input('top', src.top ?? 10, { type: 'number', min: 1, max: 100 }),
    gauge: select('gauge', gauges.map((g) => g.name), src.gauge),
    tableSource: select('tableSource', [['GAUGE', 'Gauge readings'], ['BREAKDOWN', 'A metric by dimension']], src.kind === 'BREAKDOWN' ? 'BREAKDOWN' : 'GAUGE'),
    eventType: input('eventType', src.eventType),
    limit: input('limit', src.limit ?? 10, { type: 'number', min: 1, max: 100 }),
    severities: select('severities', SEVERITY_CHOICES, (src.severities || []).join(',')),
    rules: input('rules', (src.rules || []).join(', ')),
    markdown: h('textarea', { name: 'markdown', rows: 5 }, w.markdown || ''),
    imageUrl: input('imageUrl', w.imageUrl, { type: 'url' }),
    alt: input('alt', w.alt),
    tabs: input('tabs', (w.tabs || []).join(', ')),
    columns: input('columns', (w.columns || []).map((c) => `${c.field}:${c.label}:${c.format}`).join(', ')),
  };
  const groups = {
    chart: field('Chart kind', els.chart),
    sourceKind: field('Data', els.sourceKind),
    tableSource: field('Rows from', els.tableSource),
    metric: field('Metric', els.metric),
    resolution: field('Resolution', els.resolution),
    last: field('Range (buckets)', els.last, 'Buckets back, e.g. 12; empty: the current one'),
    compare: field('Compare with', els.compare),
    dimension: field('Breakdown by', els.dimension, 'A dimension of the metric, e.g. category'),
    top: field('Top', els.top),
    gauge: field('Gauge', els.gauge),
    eventType: field('Event type', els.eventType, 'Empty: every type'),
    limit: field('How many', els.limit),
    severities: field('Severities', els.severities),
    rules: field('Alert rules', els.rules, 'Comma-separated rule names; empty: every rule'),
    markdown: field('Text (Markdown)', els.markdown),
    imageUrl: field('Image URL', els.imageUrl),
    alt: field('Alternative text', els.alt),
    tabs: field('Tabs', els.tabs, 'Comma-separated; empty: no tabs'),
    columns: field('Columns', els.columns, 'field:Label:FORMAT, … (fields: key, value, count, occurredAt); empty: key and value'),
    format: field('Number format', els.format),
  };
  const shown = () => {
    const kind = els.kind.value;
    const seriesLike = kind === 'KPI' || (kind === 'CHART' && els.sourceKind.value === 'SERIES');
    const breakdown = (kind === 'CHART' && els.sourceKind.value === 'BREAKDOWN') || (kind === 'TABLE' && els.tableSource.value === 'BREAKDOWN');
    const visible = {
      chart: kind === 'CHART',
      sourceKind: kind === 'CHART',
      tableSource: kind === 'TABLE',
      metric: seriesLike || breakdown,
      resolution: seriesLike || breakdown,
      last: seriesLike || breakdown,
      compare: seriesLike,
      dimension: breakdown,
      top: breakdown,
      gauge: kind === 'GAUGE' || (kind === 'TABLE' && els.tableSource.value === 'GAUGE'),
      eventType: kind === 'RECENT_EVENTS',
      limit: kind === 'RECENT_EVENTS',
      severities: kind === 'ALERTS',
      rules: kind === 'ALERTS',
      markdown: kind === 'TEXT',
      imageUrl: kind === 'IMAGE',
      alt: kind === 'IMAGE',
      tabs: kind === 'SECTION',
      columns: kind === 'TABLE',
      format: ['KPI', 'CHART', 'TABLE', 'GAUGE'].includes(kind),
    };
    for (const [name, group] of Object.entries(groups)) group.hidden = !visible[name];
  };
  els.kind.addEventListener('change', shown);
  els.sourceKind.addEventListener('change', shown);
  els.tableSource.addEventListener('change', shown);
  shown();

  const value = () => {
    const kind = els.kind.value;
    const num = (el) => (el.value === '' ? null : Number(el.value));
    const out = {
      id: w.id || slugOf(els.title.value).slice(0, 40).replace(/-+$/, '') || `widget-${Date.now()}`,
      kind,
      title: els.title.value.trim(),
      description: els.description.value.trim() || null,
      layout: { x: 0, y: 0, w: num(els.width) || 12, h: 2, section: els.section.value || null, tab: els.tab.value.trim() || null },
      format: groups.format.hidden ? null : els.format.value,
    };
    const metricSource = (sourceKind) => ({
      kind: sourceKind,
      metric: els.metric.value,
      resolution: els.resolution.value,
      last: num(els.last),
      ...(sourceKind === 'SERIES' ? { compareTo: els.compare.value || null } : { dimension: els.dimension.value.trim(), top: num(els.top) }),
    });
    if (kind === 'KPI') out.source = metricSource('SERIES');
    if (kind === 'CHART') Object.assign(out, { chart: els.chart.value, source: metricSource(els.sourceKind.value) });
    if (kind === 'TABLE') {
      out.source = els.tableSource.value === 'GAUGE' ? { kind: 'GAUGE', gauge: els.gauge.value } : metricSource('BREAKDOWN');
      out.columns = els.columns.value
        .split(',')
        .map((c) => c.trim())
        .filter(Boolean)
        .map((c) => {
          const [f, label, format] = c.split(':').map((p) => p.trim());
          return { field: f, label: label || f, format: format || null };
        });
    }
    if (kind === 'GAUGE') out.source = { kind: 'GAUGE', gauge: els.gauge.value };
    if (kind === 'RECENT_EVENTS') out.source = { kind: 'RECENT_EVENTS', eventType: els.eventType.value.trim() || null, limit: num(els.limit) };
    if (kind === 'ALERTS') {
      const rules = els.rules.value.split(',').map((r) => r.trim()).filter(Boolean);
      out.source = { kind: 'ALERTS', severities: els.severities.value ? els.severities.value.split(',') : null, rules: rules.length ? rules : null };
    }
    if (kind === 'TEXT') out.markdown = els.markdown.value;
    if (kind === 'IMAGE') Object.assign(out, { imageUrl: els.imageUrl.value.trim(), alt: els.alt.value.trim() });
    if (kind === 'SECTION') out.tabs = els.tabs.value.split(',').map((t) => t.trim()).filter(Boolean);
    return out;
  };

  const errors = errorBox();
  const form = h(
    'form',
    { class: 'widget-form stack', 'aria-label': widget ? `Edit widget ${widget.title}` : 'Add a widget' },
    h('h3', {}, widget ? `Edit “${widget.title}”` : 'Add a widget'),
    h('div', { class: 'row' }, field('Title', els.title), field('Kind', els.kind), field('Width (1–12 columns)', els.width)),
    h('div', { class: 'row' }, groups.chart, groups.sourceKind, groups.tableSource, groups.metric, groups.resolution, groups.last, groups.compare, groups.dimension, groups.top, groups.gauge, groups.eventType, groups.limit, groups.severities, groups.rules, groups.format),
    groups.markdown,
    h('div', { class: 'row' }, groups.imageUrl, groups.alt, groups.tabs, groups.columns),
    h('div', { class: 'row' }, field('Description', els.description), field('In section', els.section), field('Tab of the section', els.tab)),
    errors,
    h('div', { class: 'row' }, h('button', { type: 'submit' }, widget ? 'Save widget' : 'Add widget'), onCancel ? h('button', { type: 'button', class: 'secondary', onclick: onCancel }, 'Cancel') : null),
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    try {
      await onSave(value());
    } catch (error) {
      showError(errors, error);
    }
  });
  return form;
}

// --- /edit/<slug> ---------------------------------------------------------------------------------

export async function showEditor(root, slug, navigate) {
  document.title = 'Edit · Pulse';
  let model;
  const load = async () => {
    try {
      model = (await gql(`query($slug: String!) { dashboard(slug: $slug, draft: true) { ${DEFINITION} } }`, { slug })).dashboard;
    } catch (error) {
      if (error.code !== 'NOT_FOUND') throw error;
      model = (await gql(`query($slug: String!) { dashboard(slug: $slug) { ${DEFINITION} } }`, { slug })).dashboard;
    }
  };
  let catalog = { metrics: [], gauges: [] };
  try {
    await load();
    catalog = await gql('{ metrics { name } gauges: gaugeDefinitions { name } }');
  } catch (error) {
    root.append(h('h1', {}, 'Cannot edit this dashboard'), h('p', { class: 'not-found' }, error.code === 'NOT_FOUND' ? 'No such dashboard.' : error.message));
    return () => {};
  }

  const heading = h('h1', {});
  const state = h('p', { class: 'dashboard-meta', role: 'status' });
  const details = h('section', { class: 'panel', 'aria-labelledby': 'details-title' });
  const widgets = h('section', { class: 'panel', 'aria-labelledby': 'widgets-title' });
  const publishing = h('section', { class: 'panel', 'aria-labelledby': 'publish-title' });
  const previewRoot = h('div', { class: 'preview' });
  const preview = h('section', { class: 'panel', 'aria-labelledby': 'preview-title' }, h('h2', { id: 'preview-title' }, 'Preview'), previewRoot);
  root.append(h('div', { class: 'dashboard-head' }, h('div', {}, heading, state), h('a', { href: `/d/${slug}` }, 'View published')), h('div', { class: 'editor' }, h('div', { class: 'editor-forms' }, details, widgets, publishing), preview));
  let view = null;

  const mutate = async (query, variables, message) => {
    const data = await gql(query, { slug, expected: model.streamVersion, ...variables });
    announce(message);
    await refresh();
    return data;
  };

  const drawPreview = async () => {
    let shown;
    try {
      shown = (await gql(`query($slug: String!, $draft: Boolean!) { dashboard(slug: $slug, draft: $draft) { ${DASHBOARD_FIELDS} } }`, { slug, draft: model.state === 'DRAFT' })).dashboard;
    } catch (error) {
      fill(previewRoot, h('p', { class: 'widget-error' }, error.message));
      return;
    }
    view?.destroy();
    clear(previewRoot);
    view = new DashboardView(previewRoot, { live: false });
    view.update(shown);
    document.title = `Edit ${shown.name} · Pulse`;
  };

  const drawDetails = () => {
    const name = input('name', model.name, { required: true });
    const description = h('textarea', { name: 'description', rows: 2 }, model.description || '');
    const tags = input('tags', model.tags.join(', '));
    const visibility = select('visibility', [['PRIVATE', 'Private'], ['PUBLIC', 'Public']], model.visibility);
    const errors = errorBox();
    const form = h('form', { class: 'stack' }, h('div', { class: 'row' }, field('Name', name), field('Who may see it', visibility)), field('Description', description), field('Tags', tags, 'Comma-separated'), errors, h('button', { type: 'submit' }, 'Save details'));
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      try {
        await mutate(
          'mutation($slug: String!, $input: DashboardDetailsInput!, $expected: Int) { updateDashboard(slug: $slug, input: $input, expectedVersion: $expected) { streamVersion } }',
          { input: { name: name.value.trim(), description: description.value.trim(), tags: tags.value.split(',').map((t) => t.trim()).filter(Boolean), visibility: visibility.value } },
          'Details saved',
        );
      } catch (error) {
        showError(errors, error);
      }
    });
    fill(details, h('h2', { id: 'details-title' }, 'Details'), form);
  };

  const saveWidget = (existing) => async (value) => {
    if (existing) {
      await mutate('mutation($slug: String!, $widget: WidgetInput!, $expected: Int) { updateWidget(slug: $slug, widget: $widget, expectedVersion: $expected) { streamVersion } }', { widget: value }, `Widget ${value.title} saved`);
    } else {
      await mutate('mutation($slug: String!, $widget: WidgetInput!, $expected: Int) { addWidget(slug: $slug, widget: $widget, expectedVersion: $expected) { streamVersion } }', { widget: value }, `Widget ${value.title} added`);
    }
  };

  const drawWidgets = (editing = null) => {
    const sections = model.widgets.filter((w) => w.kind === 'SECTION');
    const ctx = { metrics: catalog.metrics, gauges: catalog.gauges, sections };
    const move = (w, index) => mutate('mutation($slug: String!, $id: String!, $index: Int!, $expected: Int) { moveWidget(slug: $slug, widgetId: $id, index: $index, expectedVersion: $expected) { streamVersion } }', { id: w.id, index }, `${w.title} moved to position ${index + 1}`);
    const remove = (w) => mutate('mutation($slug: String!, $id: String!, $expected: Int) { removeWidget(slug: $slug, widgetId: $id, expectedVersion: $expected) { streamVersion } }', { id: w.id }, `${w.title} removed`);
    const list = h(
      'ol',
      { class: 'widget-list' },
      model.widgets.map((w, i) =>
        h(
          'li',
          { dataset: { widget: w.id } },
          h('span', { class: 'widget-list-title' }, `${w.title} `, h('small', {}, `${w.kind.toLowerCase()}${w.chart ? ` · ${w.chart.toLowerCase()}` : ''}${w.source?.metric ? ` · ${w.source.metric}` : ''}`)),
          h(
            'span',
            { class: 'row' },
            h('button', { type: 'button', class: 'secondary', disabled: i === 0, onclick: () => move(w, i - 1), 'aria-label': `Move ${w.title} up` }, '↑'),
            h('button', { type: 'button', class: 'secondary', disabled: i === model.widgets.length - 1, onclick: () => move(w, i + 1), 'aria-label': `Move ${w.title} down` }, '↓'),
            h('button', { type: 'button', class: 'secondary', onclick: () => drawWidgets(w.id), 'aria-label': `Edit ${w.title}` }, 'Edit'),
            h('button', { type: 'button', class: 'danger', onclick: () => remove(w), 'aria-label': `Remove ${w.title}` }, 'Remove'),
          ),
        ),
      ),
    );
    const editingWidget = model.widgets.find((w) => w.id === editing);
    fill(widgets, 
      h('h2', { id: 'widgets-title' }, `Widgets (${model.widgets.length})`),
      model.widgets.length ? list : h('p', {}, 'No widgets yet: add the first one below.'),
      editingWidget ? widgetForm(editingWidget, ctx, saveWidget(editingWidget), () => drawWidgets()) : widgetForm(null, ctx, saveWidget(null)),
    );
  };

  // Built once, so release notes being typed survive the refreshes other edits cause.
  const notes = h('textarea', { name: 'releaseNotes', rows: 2 });
  const publishErrors = errorBox();
  const publishButton = h('button', { type: 'submit' }, 'Publish');
  const publishForm = h('form', { class: 'stack' }, field('Release notes', notes, 'What changed, for the version history'), publishErrors, publishButton);
  publishForm.addEventListener('submit', async (event) => {
    event.preventDefault();
    try {
      await mutate('mutation($slug: String!, $notes: String, $expected: Int) { publishDashboard(slug: $slug, releaseNotes: $notes, expectedVersion: $expected) { version state } }', { notes: notes.value.trim() || null }, 'Published');
      notes.value = '';
      showError(publishErrors, null);
    } catch (error) {
      showError(publishErrors, error);
    }
  });
  const archive = h('button', { type: 'button', class: 'danger' }, 'Archive dashboard');
  archive.addEventListener('click', async () => {
    if (!window.confirm(`Archive ${model.name}? Viewers will no longer see it.`)) return;
    try {
      await mutate('mutation($slug: String!, $expected: Int) { archiveDashboard(slug: $slug, expectedVersion: $expected) { state } }', {}, 'Archived');
    } catch (error) {
      showError(publishErrors, error);
    }
  });
  const versionRows = h('tbody');
  fill(
    publishing,
    h('h2', { id: 'publish-title' }, 'Publish'),
    publishForm,
    h('h3', {}, 'Versions'),
    h('table', { class: 'versions' }, h('thead', {}, h('tr', {}, ['Version', 'State', 'Widgets', 'Release notes', 'Published'].map((c) => h('th', { scope: 'col' }, c)))), versionRows),
    h('p', {}, archive),
  );

  const drawPublishing = async () => {
    publishButton.disabled = model.state !== 'DRAFT';
    archive.disabled = model.state === 'ARCHIVED';
    let versions = [];
    try {
      versions = (await gql('query($slug: String!) { dashboardVersions(slug: $slug) { version state releaseNotes publishedAt publishedBy widgets } }', { slug })).dashboardVersions;
    } catch {
      versions = [];
    }
    fill(versionRows, versions.map((v) => h('tr', {}, h('td', {}, v.version), h('td', {}, v.state.toLowerCase()), h('td', {}, v.widgets), h('td', {}, v.releaseNotes || ''), h('td', {}, v.publishedAt ? `${new Date(v.publishedAt).toLocaleString()} by ${v.publishedBy}` : ''))));
  };

  const refresh = async () => {
    await load();
    heading.textContent = `Edit: ${model.name}`;
    state.textContent = `Version ${model.version}, ${model.state.toLowerCase()}${model.state === 'DRAFT' ? ' (viewers see the published version until you publish)' : ''}`;
    if (!details.firstChild) drawDetails(); // once: what is being typed there survives other edits
    drawWidgets();
    await drawPublishing();
    await drawPreview();
  };
  await refresh();
  void navigate;
  return () => view?.destroy();
}
