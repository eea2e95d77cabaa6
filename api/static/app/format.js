// Number and date formats of widgets and table columns (NUMBER, PERCENT, CURRENCY, TEXT, DATETIME).

const number = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 });
const currency = new Intl.NumberFormat(undefined, { style: 'currency', currency: 'USD' });

export function formatValue(value, format = 'NUMBER') {
  if (value === null || value === undefined || value === '') return '—';
  switch (format) {
    case 'TEXT':
      return String(value);
    case 'DATETIME':
      return new Date(value).toLocaleString();
    case 'CURRENCY':
      return typeof value === 'number' ? currency.format(value) : String(value);
    case 'PERCENT':
      // Values are percentages already (changePercent is one): 12.5 shows as 12.5%.
      return typeof value === 'number' ? `${number.format(value)}%` : String(value);
    default:
      return typeof value === 'number' ? number.format(value) : String(value);
  }
}

/** A bucket's label for its resolution: the time of day for minutes and hours, the date otherwise. */
export function bucketLabel(iso, resolution) {
  const at = new Date(iso);
  if (resolution === 'MINUTE' || resolution === 'HOUR') {
    return at.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });
  }
  return at.toLocaleDateString();
}

export function ago(iso, now = Date.now()) {
  if (!iso) return 'never';
  const seconds = Math.max(0, Math.round((now - new Date(iso).getTime()) / 1000));
  if (seconds < 60) return `${seconds} s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  return new Date(iso).toLocaleString();
}
