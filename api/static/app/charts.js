// Chart.js (vendored, window.Chart) for CHART widgets, each with a text alternative: the canvas
// has an aria-label summing it up and a visually hidden table holds every value.
import { h, fill } from './dom.js';
import { bucketLabel, formatValue } from './format.js';

const PALETTE = ['#1f5fbf', '#c2410c', '#15803d', '#7e22ce', '#b91c1c', '#0f766e', '#a16207', '#be185d'];

/** Labels and datasets of a widget's data: a series (with its previous period) or a breakdown. */
export function chartData(widget, points) {
  const data = widget.data || {};
  if (data.table) {
    // A dataset: the first column labels the points, each NUMBER column after it is a series.
    const { columns, rows } = data.table;
    return {
      labels: rows.map((row) => String(row[0] ?? '')),
      datasets: columns
        .map((column, i) => ({ column, i }))
        .filter(({ column, i }) => i > 0 && column.type === 'NUMBER')
        .map(({ column, i }) => ({ label: column.name, data: rows.map((row) => row[i]) })),
    };
  }
  if (data.breakdown) {
    return {
      labels: data.breakdown.map((row) => row.key),
      datasets: [{ label: widget.source?.metric || widget.title, data: data.breakdown.map((row) => row.value) }],
    };
  }
  const series = data.series;
  if (!series) return { labels: [], datasets: [] };
  const shown = points(series.points);
  const offset = series.points.length - shown.length;
  const datasets = [{ label: 'This period', data: shown.map((p) => p.value) }];
  if (series.previous) {
    datasets.push({ label: 'Previous period', data: series.previous.slice(offset).map((p) => p?.value ?? null), previous: true });
  }
  return { labels: shown.map((p) => bucketLabel(p.bucket, series.resolution)), datasets };
}

function typeOf(chart) {
  return { LINE: 'line', COLUMN: 'bar', BAR: 'bar', STACKED_COLUMN: 'bar', PIE: 'pie', DONUT: 'doughnut' }[chart] || 'line';
}

function styled(kind, datasets) {
  const round = kind === 'PIE' || kind === 'DONUT';
  return datasets.map((set, i) => {
    const color = PALETTE[i % PALETTE.length];
    return {
      label: set.label,
      data: set.data,
      borderColor: round ? '#ffffff' : set.previous ? '#6b7280' : color,
      backgroundColor: round ? set.data.map((_, j) => PALETTE[j % PALETTE.length]) : set.previous ? '#9ca3af' : color,
      borderDash: set.previous && kind === 'LINE' ? [6, 4] : undefined,
      fill: false,
      tension: 0.25,
      cubicInterpolationMode: 'monotone', // no curve dipping below a zero bucket
      spanGaps: true,
    };
  });
}

function options(kind, format) {
  const stacked = kind === 'STACKED_COLUMN';
  const round = kind === 'PIE' || kind === 'DONUT';
  return {
    responsive: true,
    maintainAspectRatio: false,
    animation: false,
    indexAxis: kind === 'BAR' ? 'y' : 'x',
    plugins: {
      legend: { display: true, position: 'bottom' },
      tooltip: {
        callbacks: {
          // Pies parse to a number; horizontal bars carry the value on x, the others on y.
          label: (ctx) => `${round ? ctx.label : ctx.dataset.label}: ${formatValue(typeof ctx.parsed === 'number' ? ctx.parsed : kind === 'BAR' ? ctx.parsed.x : ctx.parsed.y, format)}`,
        },
      },
    },
    scales: round ? {} : { x: { stacked }, y: { stacked, beginAtZero: true } },
  };
}

function summary(widget, data) {
  const parts = data.labels.map((label, i) => `${label}: ${data.datasets.map((d) => formatValue(d.data[i], widget.format)).join(' / ')}`);
  return `${widget.title}. ${parts.length ? parts.join('; ') : 'No data yet'}.`;
}

function hiddenTable(widget, data) {
  return h(
    'table',
    { class: 'visually-hidden' },
    h('caption', {}, widget.title),
    h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Label'), data.datasets.map((d) => h('th', { scope: 'col' }, d.label)))),
    h(
      'tbody',
      {},
      data.labels.map((label, i) =>
        h('tr', {}, h('th', { scope: 'row' }, label), data.datasets.map((d) => h('td', {}, formatValue(d.data[i], widget.format)))),
      ),
    ),
  );
}

/** A chart widget's body, kept across pushes: `update` changes the data in place. */
export class ChartView {
  constructor(widget) {
    this.kind = widget.chart || 'LINE';
    this.canvas = h('canvas', { role: 'img' });
    this.alt = h('div');
    this.el = h('div', { class: 'chart' }, h('div', { class: 'chart-box' }, this.canvas), this.alt);
    this.chart = null;
  }

  update(widget, points) {
    const data = chartData(widget, points);
    const datasets = styled(this.kind, data.datasets);
    this.canvas.setAttribute('aria-label', summary(widget, data));
    fill(this.alt, hiddenTable(widget, data));
    if (!window.Chart) return; // the vendored script failed to load: the table still says it all
    if (!this.chart) {
      this.chart = new window.Chart(this.canvas, { type: typeOf(this.kind), data: { labels: data.labels, datasets }, options: options(this.kind, widget.format) });
    } else {
      this.chart.data.labels = data.labels;
      this.chart.data.datasets = datasets;
      this.chart.update('none');
    }
  }

  destroy() {
    this.chart?.destroy();
  }
}
