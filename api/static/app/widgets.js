// One view per widget kind. A view is built once and `update`d on every push, so charts keep
// their canvas and focus stays where it was.
import { ChartView } from './charts.js';
import { h, fill } from './dom.js';
import { formatValue } from './format.js';
import { renderMarkdown } from './markdown.js';

function errorOf(widget) {
  const error = widget.data?.error;
  return error ? h('p', { class: 'widget-error', role: 'status' }, `Cannot show this widget: ${error.message}`) : null;
}

class KpiView {
  constructor() {
    this.el = h('div', { class: 'kpi' });
  }

  update(widget) {
    const kpi = widget.data?.kpi || {};
    const more = (widget.data?.kpis || []).slice(1); // a KPI's other metrics, over the same range
    const change = kpi.changePercent;
    const direction = change === null || change === undefined ? 'flat' : change > 0 ? 'up' : change < 0 ? 'down' : 'flat';
    const arrow = { up: '▲', down: '▼', flat: '' }[direction];
    fill(this.el, 
      h('p', { class: 'kpi-value', dataset: { value: kpi.value ?? '' } }, formatValue(kpi.value ?? 0, widget.format)),
      h(
        'p',
        { class: `kpi-change ${direction}` },
        change === null || change === undefined
          ? kpi.previous === null || kpi.previous === undefined
            ? 'No previous period to compare with'
            : `Previous period: ${formatValue(kpi.previous, widget.format)}`
          : `${arrow} ${formatValue(Math.abs(change), 'PERCENT')} against the previous period (${formatValue(kpi.previous, widget.format)})`,
      ),
      more.length
        ? h(
            'ul',
            { class: 'kpi-more' },
            more.map((k) =>
              h('li', { dataset: { metric: k.metric, value: k.value ?? '' } }, `${k.metric}: ${formatValue(k.value ?? 0, widget.format)}`, k.changePercent === null || k.changePercent === undefined ? '' : ` (${k.changePercent > 0 ? '▲' : k.changePercent < 0 ? '▼' : ''} ${formatValue(Math.abs(k.changePercent), 'PERCENT')})`),
            ),
          )
        : null,
    );
  }
}

function rowsOf(widget) {
  const data = widget.data || {};
  if (data.breakdown) return data.breakdown;
  if (data.gauges) return data.gauges;
  return [];
}

class TableView {
  constructor() {
    this.el = h('div', { class: 'table-wrap' });
  }

  update(widget) {
    if (widget.data?.table) return this.dataset(widget);
    const rows = rowsOf(widget);
    const columns = widget.columns.length
      ? widget.columns
      : [
          { field: 'key', label: 'Key', format: 'TEXT' },
          { field: 'value', label: 'Value', format: widget.format || 'NUMBER' },
        ];
    fill(this.el, 
      h(
        'table',
        {},
        h('caption', { class: 'visually-hidden' }, widget.title),
        h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col', class: c.format === 'TEXT' ? '' : 'num' }, c.label)))),
        h(
          'tbody',
          {},
          rows.length
            ? rows.map((row) => h('tr', {}, columns.map((c) => h('td', { class: c.format === 'TEXT' ? '' : 'num' }, formatValue(row[c.field], c.format)))))
            : h('tr', {}, h('td', { colspan: columns.length }, 'No rows yet')),
        ),
      ),
    );
  }

  dataset(widget) {
    // A dataset's rows are lists, one cell per column; the widget's columns pick and format them by name.
    const { columns, rows } = widget.data.table;
    const index = new Map(columns.map((c, i) => [c.name, i]));
    const shown = widget.columns.length
      ? widget.columns.filter((c) => index.has(c.field)).map((c) => ({ ...c, at: index.get(c.field) }))
      : columns.map((c, at) => ({ field: c.name, label: c.name, format: TYPE_FORMATS[c.type] || 'TEXT', at }));
    fill(
      this.el,
      h(
        'table',
        {},
        h('caption', { class: 'visually-hidden' }, widget.title),
        h('thead', {}, h('tr', {}, shown.map((c) => h('th', { scope: 'col', class: c.format === 'TEXT' ? '' : 'num' }, c.label)))),
        h(
          'tbody',
          {},
          rows.length
            ? rows.map((row) => h('tr', {}, shown.map((c) => h('td', { class: c.format === 'TEXT' ? '' : 'num' }, formatValue(row[c.at], c.format)))))
            : h('tr', {}, h('td', { colspan: shown.length || 1 }, 'No rows yet')),
        ),
      ),
    );
  }
}

const TYPE_FORMATS = { NUMBER: 'NUMBER', DATETIME: 'DATETIME' };


class GaugeView {
  constructor() {
    this.el = h('div', { class: 'gauges' });
  }

  update(widget) {
    const readings = widget.data?.gauges || [];
    const top = Math.max(1, ...readings.map((r) => r.value));
    fill(this.el, 
      readings.length
        ? readings.map((r) =>
            h(
              'div',
              { class: 'gauge' },
              h('span', { class: 'gauge-key' }, r.key),
              h('meter', { min: 0, max: top, value: r.value, 'aria-label': `${r.key}: ${formatValue(r.value, widget.format)}` }),
              h('span', { class: 'gauge-value' }, formatValue(r.value, widget.format)),
            ),
          )
        : h('p', {}, 'No readings yet'),
    );
  }
}

class RecentView {
  constructor() {
    // It scrolls, so it takes focus: keyboard users scroll it with the arrow keys.
    this.el = h('ol', { class: 'feed', tabindex: 0 });
  }

  update(widget) {
    this.el.setAttribute('aria-label', widget.title);
    const events = widget.data?.events || [];
    fill(this.el, 
      events.length
        ? events.map((e) =>
            h(
              'li',
              {},
              h('time', { datetime: e.occurredAt }, new Date(e.occurredAt).toLocaleTimeString()),
              ' ',
              h('span', { class: 'feed-type' }, e.type),
              ' ',
              Object.entries(e.properties || {})
                .map(([k, v]) => `${k}: ${v}`)
                .join(', '),
            ),
          )
        : h('li', {}, 'No events yet'),
    );
  }
}

// The alert-rule instances alerting now, most severe first: the severity is written out (not a
// colour alone) and the list is announced politely when it changes.
class AlertsView {
  constructor() {
    this.el = h('ul', { class: 'alerts', 'aria-live': 'polite' });
  }

  update(widget) {
    this.el.setAttribute('aria-label', widget.title);
    const alerts = widget.data?.alerts || [];
    fill(
      this.el,
      alerts.length
        ? alerts.map((a) =>
            h(
              'li',
              { class: `alert severity-${a.severity.toLowerCase()}`, dataset: { rule: a.rule, instance: a.instance, state: a.state } },
              h('span', { class: 'alert-severity' }, a.severity),
              ' ',
              h('span', { class: 'alert-rule' }, a.instance ? `${a.rule}: ${a.instance}` : a.rule),
              ' ',
              h('span', { class: 'alert-value' }, `${formatValue(a.value)} (threshold ${formatValue(a.threshold)})`),
              ' ',
              h('span', { class: 'alert-since' }, a.state === 'RECOVERING' ? 'recovering since ' : 'firing since ', h('time', { datetime: a.since }, new Date(a.since).toLocaleTimeString())),
            ),
          )
        : h('li', { class: 'alert-none' }, 'No alerts firing'),
    );
  }
}

class TextView {
  constructor() {
    this.el = h('div', { class: 'markdown' });
  }

  update(widget) {
    // renderMarkdown escapes everything first: no HTML of the author's survives.
    this.el.innerHTML = renderMarkdown(widget.markdown);
  }
}

class ImageView {
  constructor() {
    this.el = h('figure', { class: 'image' });
  }

  update(widget) {
    // Only web and same-site images: the URL is an editor's free text.
    const safe = /^(https?:\/\/|\/(?!\/)|data:image\/)/i.test(widget.imageUrl || '');
    fill(this.el, safe ? h('img', { src: widget.imageUrl, alt: widget.alt || '' }) : h('p', {}, widget.alt || ''));
  }
}

class SectionView {
  constructor(widget) {
    this.el = h('div', { class: 'section-body' });
    this.tabs = widget.tabs || [];
    this.panels = new Map();
    if (this.tabs.length) {
      const list = h('div', { role: 'tablist', class: 'tabs' });
      this.tabs.forEach((tab, i) => {
        const id = `tab-${widget.id}-${i}`;
        const panel = h('div', { role: 'tabpanel', id: `${id}-panel`, 'aria-labelledby': id, class: 'grid', hidden: i > 0 });
        const button = h('button', { type: 'button', role: 'tab', id, 'aria-controls': `${id}-panel`, 'aria-selected': String(i === 0) }, tab);
        button.addEventListener('click', () => {
          list.querySelectorAll('[role=tab]').forEach((b) => b.setAttribute('aria-selected', String(b === button)));
          this.panels.forEach((p) => (p.hidden = p !== panel));
        });
        list.append(button);
        this.panels.set(tab, panel);
      });
      this.el.append(list, ...this.panels.values());
    } else {
      this.panels.set(null, h('div', { class: 'grid' }));
      this.el.append(this.panels.get(null));
    }
  }

  /** The grid a child widget of this section goes in (its tab's, else the first). */
  slot(tab) {
    return this.panels.get(tab ?? null) || this.panels.values().next().value;
  }

  update() {}
}

const VIEWS = { ALERTS: AlertsView, KPI: KpiView, TABLE: TableView, GAUGE: GaugeView, RECENT_EVENTS: RecentView, TEXT: TextView, IMAGE: ImageView, SECTION: SectionView, CHART: ChartView };

/** A widget's card: title, description, body, and the CSV link where it has data. */
export class WidgetCard {
  constructor(widget, { csv } = {}) {
    this.kind = widget.kind;
    this.view = new (VIEWS[widget.kind] || TextView)(widget);
    this.error = h('div');
    const titleId = `w-${widget.id}-title`;
    this.title = h('h2', { id: titleId }, widget.title);
    this.tools = h('div', { class: 'widget-tools' });
    this.el = h(
      'section',
      { class: `widget widget-${widget.kind.toLowerCase()}`, 'aria-labelledby': titleId, dataset: { widget: widget.id, kind: widget.kind } },
      h('header', {}, this.title, this.tools),
      widget.description ? h('p', { class: 'widget-description' }, widget.description) : null,
      this.error,
      this.view.el,
    );
    const span = Math.max(1, Math.min(12, widget.layout?.w || 12));
    this.el.style.setProperty('--span', span);
    if (csv && widget.source) {
      this.tools.append(h('button', { type: 'button', class: 'link', onclick: () => csv(this.widget), 'aria-label': `Download ${widget.title} as CSV` }, 'CSV'));
    }
  }

  update(widget, points) {
    this.widget = widget;
    this.title.textContent = widget.title;
    fill(this.error, errorOf(widget) || '');
    this.view.update(widget, points);
  }

  destroy() {
    this.view.destroy?.();
  }
}
