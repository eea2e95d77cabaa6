// /: the dashboards the caller may see (public published ones without a key), with search and tags.
import { gql } from './api.js';
import { h, fill } from './dom.js';

const LIST = `query($search: String, $tag: String) {
  dashboards(search: $search, tag: $tag) { slug name description tags visibility state version updatedAt hasDraft }
}`;

export async function showList(root, { editor }) {
  document.title = 'Dashboards · Pulse';
  const search = h('input', { id: 'search', type: 'search', placeholder: 'Name or description', autocomplete: 'off' });
  const tags = h('div', { class: 'tag-filter', role: 'group', 'aria-label': 'Filter by tag' });
  const results = h('ul', { class: 'cards', 'aria-live': 'polite' });
  let tag = null;
  let allTags = [];
  root.append(
    h('div', { class: 'dashboard-head' }, h('h1', {}, 'Dashboards'), editor ? h('a', { class: 'button', href: '/new' }, 'New dashboard') : null),
    h('div', { class: 'filters' }, h('label', { for: 'search' }, 'Search '), search, tags),
    results,
  );

  const drawTags = () => {
    fill(tags, 
      allTags.map((t) =>
        h('button', { type: 'button', class: 'tag', 'aria-pressed': String(t === tag), onclick: () => { tag = t === tag ? null : t; drawTags(); load(); } }, `#${t}`),
      ),
    );
  };

  const load = async () => {
    let found;
    try {
      found = (await gql(LIST, { search: search.value.trim() || null, tag })).dashboards;
    } catch (error) {
      fill(results, h('li', { class: 'widget-error' }, error.message));
      return;
    }
    if (!tag && !search.value.trim()) {
      allTags = [...new Set(found.flatMap((d) => d.tags))].sort();
      drawTags();
    }
    fill(results, 
      found.length
        ? found.map((d) =>
            h(
              'li',
              { class: 'card' },
              h('h2', {}, h('a', { href: `/d/${encodeURIComponent(d.slug)}` }, d.name)),
              h('p', {}, d.description || ''),
              h('p', { class: 'card-meta' }, `${d.visibility.toLowerCase()} · ${d.state.toLowerCase()} · v${d.version}`, d.hasDraft ? ' · draft open' : '', ' ', d.tags.map((t) => h('span', { class: 'tag' }, `#${t}`))),
              editor ? h('p', {}, h('a', { href: `/edit/${encodeURIComponent(d.slug)}` }, 'Edit', h('span', { class: 'visually-hidden' }, ` ${d.name}`))) : null,
            ),
          )
        : h('li', {}, 'No dashboards to show. Public dashboards appear here once published; sign in to see private ones.'),
    );
  };
  let timer;
  search.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(load, 200);
  });
  await load();
  return () => clearTimeout(timer);
}
